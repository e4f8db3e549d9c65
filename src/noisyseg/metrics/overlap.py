"""Overlap metrics: Dice and IoU for binary masks, and a cheap per-class Dice for label maps.

Empty-mask policy (the same as in :mod:`noisyseg.metrics.surface`): when both masks are
empty the score is undefined and returned as NaN; when exactly one is empty it is 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dice", "iou", "dice_per_class", "confusion_matrix"]


def _overlap_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    inter = int(np.count_nonzero(pred & truth))
    return inter, int(np.count_nonzero(pred)), int(np.count_nonzero(truth))


def _dice_from_counts(inter: float, n_pred: float, n_truth: float) -> float:
    denom = n_pred + n_truth
    return float("nan") if denom == 0 else 2.0 * inter / denom


def _iou_from_counts(inter: float, n_pred: float, n_truth: float) -> float:
    union = n_pred + n_truth - inter
    return float("nan") if union == 0 else inter / union


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2|P∩T| / (|P|+|T|) of two binary masks of the same shape.

    Args:
        pred: predicted mask, any shape; nonzero means foreground.
        truth: reference mask, same shape.

    Returns:
        Dice in [0, 1]; NaN when both masks are empty (undefined), 0 when exactly one is.
    """
    return _dice_from_counts(*_overlap_counts(pred, truth))


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union |P∩T| / |P∪T| (Jaccard) of two binary masks of the same shape.

    Returns NaN when both masks are empty (undefined), 0 when exactly one is.
    """
    return _iou_from_counts(*_overlap_counts(pred, truth))


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Voxel counts ``cm[t, p]`` of truth class t predicted as class p, shape (num_classes, num_classes).

    Both inputs are integer label maps with values in ``[0, num_classes)``; truth voxels equal to
    ``IGNORE_INDEX`` (-1, unannotated) are not counted. One ``bincount`` pass.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = pred.astype(np.int64, copy=False).ravel()
    t = truth.astype(np.int64, copy=False).ravel()
    if t.size and t.min() == -1:
        keep = t != -1
        p, t = p[keep], t[keep]
    for name, arr in (("pred", p), ("truth", t)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(
                f"{name} has label values outside [0, {num_classes}): min {arr.min()}, max {arr.max()}"
            )
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def dice_per_class(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every class index 0..num_classes-1 of two label maps, in one pass (for validation loops).

    Args:
        pred: integer label map (e.g. argmax of the network output), any shape.
        truth: integer label map of the same shape.
        num_classes: number of classes including background.

    Returns:
        float64 array of shape (num_classes,); entry c is NaN when class c is absent from both.
        Index 0 is background; take ``[1:]`` for foreground classes.
    """
    cm = confusion_matrix(pred, truth, num_classes).astype(np.float64)
    inter = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * inter / denom, np.nan)
