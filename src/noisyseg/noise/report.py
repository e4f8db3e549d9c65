"""Per-case noise statistics, the rows of ``noise_report.csv``."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..metrics.overlap import confusion_matrix
from ._common import BACKGROUND, check_label


def noise_stats(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> dict:
    """How far a noisy label is from the clean one.

    Keys (all floats, one row of noise_report.csv):
        dice: mean over foreground classes present in clean or noisy of
            Dice(noisy == k, clean == k); 1.0 when neither has foreground.
        noise_level: 1 - dice (the L2B level).
        changed_fraction: fraction of all voxels whose class differs.
        dice_<k>: per foreground class k (NaN if absent from both).
        changed_frac_<k>: for k in 0..num_classes-1, fraction of the clean voxels of
            class k whose noisy class differs (NaN if k is absent from clean).
    Pixels ignored (-1, unannotated) in the clean label are left out of every count.
    """
    if isinstance(clean, np.ndarray) and clean.size and clean.min() < 0 and isinstance(noisy, np.ndarray) \
            and noisy.shape == clean.shape:
        keep = clean >= 0
        clean, noisy = clean[keep][:, None], noisy[keep][:, None]  # 2D (M, 1): the annotated pixels
    clean = check_label(clean, "clean label")
    noisy = check_label(noisy, "noisy label")
    if clean.shape != noisy.shape:
        raise DataError(f"clean and noisy labels differ in shape: {clean.shape} vs {noisy.shape}")
    num_classes = int(num_classes)
    top = int(max(clean.max(initial=0), noisy.max(initial=0)))
    if top >= num_classes:
        raise DataError(f"label value {top} is out of range for num_classes={num_classes}")
    cm = confusion_matrix(noisy, clean, num_classes).astype(np.float64)  # rows clean, columns noisy
    tp = np.diag(cm)
    n_clean = cm.sum(axis=1)
    n_noisy = cm.sum(axis=0)
    stats: dict = {}
    dices = []
    per_dice = {}
    for k in range(num_classes):
        if k == BACKGROUND:
            continue
        denom = n_clean[k] + n_noisy[k]
        if denom == 0:
            per_dice[k] = float("nan")
            continue
        d = 2.0 * tp[k] / denom
        per_dice[k] = float(d)
        dices.append(d)
    dice = float(np.mean(dices)) if dices else 1.0
    stats["dice"] = dice
    stats["noise_level"] = 1.0 - dice
    total = clean.size
    stats["changed_fraction"] = float((total - tp.sum()) / total) if total else 0.0
    for k in range(num_classes):
        stats[f"changed_frac_{k}"] = (
            float(1.0 - tp[k] / n_clean[k]) if n_clean[k] > 0 else float("nan")
        )
    for k, d in per_dice.items():
        stats[f"dice_{k}"] = d
    return stats
