"""The V-Net of the semi-supervised / noisy-label LA and Pancreas literature (UA-MT, MC-Net, MTCL).

MONAI's `VNet` is a different, about 45 M-parameter network; the papers whose numbers we
compare against use this lighter one: 16 base filters, 1-2-3-3-3 convolutions per encoder
stage, stride-2 convolutions down, transposed convolutions up, additive skips, batch norm,
about 9.4 M parameters. It is written here because no maintained library ships it.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_stage(n_convs: int, cin: int, cout: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _resample(cin: int, cout: int, up: bool) -> nn.Sequential:
    conv = nn.ConvTranspose3d if up else nn.Conv3d
    return nn.Sequential(conv(cin, cout, 2, stride=2), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class VNet(nn.Module):
    """Encoder-decoder mapping (N, in_channels, X, Y, Z) to (N, out_channels, X, Y, Z);
    X, Y, Z must be divisible by 16.

    Args:
        in_channels: image channels.
        out_channels: feature channels returned (a 1x1 conv is added when != base).
        base: filters of the first stage (16 in the papers).
        dropout: 3D dropout before the decoder (0.5 in MC-Net when enabled).
    """

    STAGES = (1, 2, 3, 3, 3)

    def __init__(self, in_channels: int = 1, out_channels: int = 16, base: int = 16, dropout: float = 0.0):
        super().__init__()
        widths = [base * 2**i for i in range(5)]
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = in_channels
        for i, (n, w) in enumerate(zip(self.STAGES, widths)):
            self.enc.append(_conv_stage(n, cin, w))
            if i < 4:
                self.down.append(_resample(w, widths[i + 1], up=False))
            cin = widths[i + 1] if i < 4 else w
        self.up = nn.ModuleList(_resample(widths[i + 1], widths[i], up=True) for i in reversed(range(4)))
        self.dec = nn.ModuleList(_conv_stage(n, w, w) for n, w in zip((3, 3, 2, 1), reversed(widths[:4])))
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Conv3d(base, out_channels, 1) if out_channels != base else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, stage in enumerate(self.enc):
            x = stage(x)
            if i < 4:
                skips.append(x)
                x = self.down[i](x)
        x = self.dropout(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(up(x) + skip)
        return self.out(x)
