"""A segmentation network that exposes its last decoder features.

Methods such as CLCS (discrepancy loss) and MetaDCSeg (feature centers) need the last
decoder feature map, which MONAI's networks do not return; wrapping a MONAI body whose
output is `features` channels, followed by a 1x1 convolution head, gives both without
touching MONAI's code.
"""

from __future__ import annotations

import torch
from torch import nn


class SegNet(nn.Module):
    """Body (any network mapping (N, C_in, *S) to (N, F, *S)) plus a 1x1 head to K classes.

    Args:
        body: the encoder-decoder.
        features: F, the channels the body outputs.
        num_classes: K.
        spatial_dims: 2 or 3.
    """

    def __init__(self, body: nn.Module, features: int, num_classes: int, spatial_dims: int):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.body = body
        self.act = nn.ReLU(inplace=False)
        self.head = conv(features, num_classes, kernel_size=1)
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last decoder features (N, F, *S)."""
        out = self.body(x)
        if isinstance(out, (list, tuple)):  # UNet++ returns a list of deep-supervision heads
            out = out[0]
        return self.act(out)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, F, *S), logits (N, K, *S))."""
        f = self.features(x)
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, *S)."""
        return self.head(self.features(x))
