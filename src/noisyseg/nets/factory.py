"""Build backbones from the validated NetConfig (MONAI networks, plus our V-Net)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import NetConfig
from ..errors import ConfigError
from .segnet import SegNet


def _norm(cfg: NetConfig) -> tuple:
    return (cfg.norm, {"affine": True})


def build_body(cfg: NetConfig, spatial_dims: int, in_channels: int) -> nn.Module:
    """The encoder-decoder mapping (N, in_channels, *S) to (N, cfg.features, *S)."""
    if cfg.arch == "unet":
        from monai.networks.nets import UNet

        if len(cfg.channels) < 2:
            raise ConfigError(f"net.channels: need at least 2 levels, got {cfg.channels}")
        return UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=cfg.features,
            channels=tuple(cfg.channels),
            strides=(2,) * (len(cfg.channels) - 1),
            num_res_units=cfg.num_res_units,
            norm=_norm(cfg),
            dropout=cfg.dropout,
        )
    if cfg.arch == "unetpp":
        from monai.networks.nets import BasicUNetPlusPlus

        if len(cfg.channels) != 5:
            raise ConfigError(f"net.channels: unetpp needs 5 levels, got {cfg.channels}")
        return BasicUNetPlusPlus(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=cfg.features,
            features=tuple(cfg.channels) + (cfg.channels[0],),
            norm=_norm(cfg),
            dropout=cfg.dropout,
        )
    if cfg.arch == "vnet":
        from .vnet import VNet

        if spatial_dims != 3:
            raise ConfigError("net.arch: vnet is a 3D network; use unet or unetpp for 2D")
        if cfg.norm != "batch":
            raise ConfigError("net.norm: vnet uses batch norm (as in the papers); use unet for instance norm")
        return VNet(in_channels=in_channels, out_channels=cfg.features, base=cfg.channels[0], dropout=cfg.dropout)
    raise ConfigError(f"net.arch: unknown architecture '{cfg.arch}'")


def downsample_factor(cfg: NetConfig) -> int:
    """Patch sizes must be divisible by this."""
    if cfg.arch == "vnet":
        return 16
    return 2 ** (len(cfg.channels) - 1)


def net_factory(cfg: NetConfig, spatial_dims: int, in_channels: int, num_classes: int) -> Callable[[], SegNet]:
    """A function that builds a fresh SegNet each call (methods with two or three networks
    call it several times; initialisation comes from the torch RNG, which the loop seeds)."""

    def make() -> SegNet:
        return SegNet(build_body(cfg, spatial_dims, in_channels), cfg.features, num_classes, spatial_dims)

    return make
