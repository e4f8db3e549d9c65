"""Label-quality audit: which training labels (voxels, cases) are probably wrong.

    from noisyseg.audit import label_quality, audit
    scores_per_case, scores_per_voxel = label_quality(labels, probs, method="self_confidence")
"""

from .metrics import auroc, average_precision, spearman
from .run import AUDIT_METHODS, audit
from .scores import (
           CASE_SCORES,
           VOXEL_METHODS,
           class_thresholds,
           label_quality,
           voxel_scores,
)

__all__ = ["AUDIT_METHODS", "CASE_SCORES", "VOXEL_METHODS", "audit", "auroc", "average_precision",
           "class_thresholds", "label_quality", "spearman", "voxel_scores"]
