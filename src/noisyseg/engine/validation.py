"""Validation Dice on held-out training cases (model selection; never the test set)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.case import Case
from ..methods import Method
from .inference import predict_case


def mean_foreground_dice(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in `pred` or `truth` (NaN when none is)."""
    from ..metrics import dice_per_class

    d = np.asarray(dice_per_class(pred, truth, num_classes), dtype=float)[1:]
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def validation_scores(method: Method, cases: list[Case], num_classes: int, device: torch.device,
                      **window: Any) -> dict[str, float]:
    """``val/dice`` against the given labels and, where cases have them, ``val/dice_clean``
    against the clean labels; `window` are :func:`predict_case`'s sliding-window arguments.
    The method runs in eval mode and is left in train mode."""
    method.eval()
    noisy, clean = [], []
    for c in cases:
        pred = predict_case(method.predict_proba, c.image, device=device, **window).argmax(0)
        noisy.append(mean_foreground_dice(pred, c.label, num_classes))
        if c.clean_label is not None:
            clean.append(mean_foreground_dice(pred, c.clean_label, num_classes))
    method.train()
    out = {"val/dice": float(np.nanmean(noisy)) if noisy else float("nan")}
    if clean:
        out["val/dice_clean"] = float(np.nanmean(clean))
    return out
