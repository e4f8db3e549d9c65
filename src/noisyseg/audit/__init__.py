"""Label-quality audit: which training labels (voxels, cases) are probably wrong.

    from noisyseg.audit import label_quality, audit
    scores_per_case, scores_per_voxel = label_quality(labels, probs, method="self_confidence")  # error: higher = worse

    from noisyseg.audit import get_label_quality_scores  # cleanlab's call and orientation: lower = worse
    image_scores, pixel_scores = get_label_quality_scores(labels, pred_probs, method="softmin")
"""

from .metrics import auroc, average_precision, spearman
from .run import AUDIT_METHODS, audit
from .segmentation_rank import QUALITY_METHODS, get_label_quality_scores
from .scores import (
           CASE_SCORES,
           VOXEL_METHODS,
           class_thresholds,
           label_quality,
           voxel_scores,
)

__all__ = ["AUDIT_METHODS", "CASE_SCORES", "QUALITY_METHODS", "VOXEL_METHODS", "audit", "auroc",
           "average_precision", "class_thresholds", "get_label_quality_scores", "label_quality", "spearman",
           "voxel_scores"]
