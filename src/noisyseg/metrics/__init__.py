"""Segmentation metrics: Dice, IoU, HD95 and ASD (in mm, spacing-aware), per class and per region.

See :mod:`noisyseg.metrics.surface` for the surface conventions and the empty-mask policy.
"""

from .case_metrics import METRICS, case_metrics, metric_names
from .evaluate import evaluate_folders, summarize
from .overlap import confusion_matrix, dice, dice_per_class, iou
from .surface import (CONVENTIONS, EMPTY_MASK_POLICY, asd, hd95, surface_distances, surface_metrics,
                      worst_distance)

__all__ = [
    "CONVENTIONS",
    "EMPTY_MASK_POLICY",
    "METRICS",
    "asd",
    "case_metrics",
    "confusion_matrix",
    "dice",
    "dice_per_class",
    "evaluate_folders",
    "hd95",
    "iou",
    "metric_names",
    "summarize",
    "surface_distances",
    "surface_metrics",
    "worst_distance",
]
