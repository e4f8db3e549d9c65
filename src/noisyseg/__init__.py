"""noisyseg: medical image segmentation that stays accurate when training labels are wrong."""

__version__ = "0.1.0"
