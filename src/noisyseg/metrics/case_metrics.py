"""All metrics of one case: Dice, IoU, HD95 and ASD per class and per region (e.g. BraTS WT/TC/ET).

Follows the empty-mask policy and surface conventions of :mod:`noisyseg.metrics.surface`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from .overlap import _dice_from_counts, _iou_from_counts
from .surface import _check_convention, _cropped_surface_metrics, normalize_spacing

__all__ = ["METRICS", "case_metrics", "metric_names"]

METRICS = ("dice", "iou", "hd95", "asd")


def metric_names(num_classes: int, *, include_background: bool = False,
                 regions: Mapping[str, Sequence[int]] | None = None) -> list[str]:
    """Result keys in order: ``dice_1, iou_1, hd95_1, asd_1, dice_2, ...`` then ``dice_<region>, ...``."""
    first = 0 if include_background else 1
    suffixes = [str(c) for c in range(first, num_classes)] + list(regions or {})
    return [f"{m}_{s}" for s in suffixes for m in METRICS]


def _margin_box(box_a: tuple[slice, ...] | None, box_b: tuple[slice, ...] | None,
                shape: Sequence[int]) -> tuple[slice, ...] | None:
    boxes = [b for b in (box_a, box_b) if b is not None]
    if not boxes:
        return None
    return tuple(
        slice(max(min(b[ax].start for b in boxes) - 1, 0), min(max(b[ax].stop for b in boxes) + 1, shape[ax]))
        for ax in range(len(shape))
    )


def _mask_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    found = ndimage.find_objects(mask.astype(np.uint8, copy=False), max_label=1)
    return found[0] if found else None


def _metrics_on_crop(p: np.ndarray, t: np.ndarray, sp: np.ndarray, shape: Sequence[int],
                     convention: str) -> tuple[float, float, float, float]:
    inter = int(np.count_nonzero(p & t))
    n_p, n_t = int(np.count_nonzero(p)), int(np.count_nonzero(t))
    hd, mean = _cropped_surface_metrics(p, t, sp, shape, convention, 95.0)
    return _dice_from_counts(inter, n_p, n_t), _iou_from_counts(inter, n_p, n_t), hd, mean


def case_metrics(pred: np.ndarray, truth: np.ndarray, *, num_classes: int,
                 spacing: float | Sequence[float] | None, convention: str = "monai",
                 include_background: bool = False,
                 regions: Mapping[str, Sequence[int]] | None = None) -> dict[str, float]:
    """Dice, IoU, HD95 (mm) and ASD (mm) of every class and region of one case.

    Args:
        pred: integer label map of class indices, shape (H, W) or (X, Y, Z).
        truth: integer label map of the same shape; voxels equal to -1 (``IGNORE_INDEX``,
            unannotated) are excluded from every metric: neither map has a class there.
        num_classes: number of classes including background (index 0).
        spacing: voxel size in mm per axis (a scalar for isotropic; None means 1 mm,
            which is only right for images without a physical spacing, such as PNG).
        convention: ``"monai"`` (default) or ``"medpy"``: how HD95 and ASD aggregate the two
            directed distance sets (see :mod:`noisyseg.metrics.surface`).
        include_background: also score class 0.
        regions: name -> class indices whose union forms the region, e.g. BraTS with labels
            mapped to 0..3: ``{"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}``.

    Returns:
        Ordered dict with keys from :func:`metric_names`, e.g. ``dice_1, iou_1, hd95_1, asd_1,
        dice_2, ..., dice_WT, iou_WT, hd95_WT, asd_WT``. NaN where a class is absent from both.

    Raises:
        ValueError: shape mismatch, label values outside ``[0, num_classes)``, bad region or spacing.
    """
    _check_convention(convention)
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"case_metrics needs 2D or 3D label maps, got {pred.ndim}D")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, arr in (("pred", pred), ("truth", truth)):
        if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
            if not np.array_equal(arr, np.round(arr)):
                raise ValueError(f"{name} holds non-integer label values")
        lo, hi = arr.min(), arr.max()
        if (lo < 0 and not (name == "truth" and lo == -1)) or hi >= num_classes:
            raise ValueError(f"{name} has label values outside [0, {num_classes}): min {lo}, max {hi}")
    pred = pred.astype(np.int32, copy=False)
    truth = truth.astype(np.int32, copy=False)
    if truth.min() == -1:  # ignored voxels become label K, outside every class and region
        ignored = truth == -1
        truth = np.where(ignored, num_classes, truth).astype(np.int32)
        pred = np.where(ignored, num_classes, pred).astype(np.int32)
    sp = normalize_spacing(spacing, pred.ndim)
    regions = dict(regions or {})
    for rname, members in regions.items():
        if not str(rname) or str(rname).isdigit():
            raise ValueError(f"region name '{rname}' must be a non-numeric name such as 'WT'")
        bad = [c for c in members if not 0 <= int(c) < num_classes]
        if not members or bad:
            raise ValueError(f"region '{rname}' must list class indices in [0, {num_classes}), got {list(members)}")

    shape = pred.shape
    out: dict[str, float] = {}
    # one pass per label map gives the bounding box of every class
    boxes_p = ndimage.find_objects(pred, max_label=num_classes - 1) if num_classes > 1 else []
    boxes_t = ndimage.find_objects(truth, max_label=num_classes - 1) if num_classes > 1 else []
    first = 0 if include_background else 1
    for c in range(first, num_classes):
        if c == 0:
            p_full, t_full = pred == 0, truth == 0
            box = _margin_box(_mask_box(p_full), _mask_box(t_full), shape)
            p = p_full[box] if box is not None else None
            t = t_full[box] if box is not None else None
        else:
            box = _margin_box(boxes_p[c - 1], boxes_t[c - 1], shape)
            if box is not None:
                p, t = pred[box] == c, truth[box] == c
        vals = (float("nan"),) * 4 if box is None else _metrics_on_crop(p, t, sp, shape, convention)
        for m, v in zip(METRICS, vals):
            out[f"{m}_{c}"] = v
    for rname, members in regions.items():
        members = [int(c) for c in members]
        p_full, t_full = np.isin(pred, members), np.isin(truth, members)
        box = _margin_box(_mask_box(p_full), _mask_box(t_full), shape)
        vals = (float("nan"),) * 4 if box is None else _metrics_on_crop(p_full[box], t_full[box], sp, shape,
                                                                         convention)
        for m, v in zip(METRICS, vals):
            out[f"{m}_{rname}"] = v
    return out
