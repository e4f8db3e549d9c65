from .factory import build_body, downsample_factor, net_factory
from .segnet import SegNet

__all__ = ["SegNet", "build_body", "net_factory", "downsample_factor"]
