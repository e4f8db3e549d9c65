"""`adele`: Adaptive Early-Learning Correction (Liu et al., CVPR 2022).

One network. Per foreground class c, the IoU between the training prediction and the given
labels is recorded once per interval (`curve_points` points over training) and fitted with
f(x) = a(1 − exp(−x^b / c)); early learning of c has ended when the fitted slope fell below
(1 − r) of its slope at the first interval (r = 0.9), and c stays active from then on.
Once a class is active, a pixel's label becomes the prediction ŷ where max_k p_k > τ (0.8)
and both ỹ and ŷ are background or active (and ŷ is in the sample's given classes); the loss
is CE + soft Dice on the corrected labels. Corrections are per batch (no label memory).

Batch: image (N, C, *S), label (N, *S) [, clean_label, valid]. Parameters: `ADELEParams`
(`tta_flip` averages the confidence over flips). State (curve, active classes) is in buffers.
Logs: ``adele/active/c{k}``, ``adele/iou/c{k}``, ``adele/corrected_frac``; with
``clean_label`` ``adele/label_acc_given``, ``adele/label_acc_corrected``,
``adele/correction_precision``. Design choices and measurements: docs/methods/adele.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from pydantic import Field, model_validator

from ..config import StrictModel
from .base import Method, StepInfo, StepOutput, class_counts, host_values
from .losses import ce_dice_loss
from .shared import flip_averaged_probs
from .registry import register

PLATEAU_FRACTION = 0.1  # the fit starts where the curve first reaches 10 % of its range


# --------------------------------------------------------------------------- curve and detection


def saturation_curve(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """f(x) = a(1 − exp(−x^b / c))."""
    return a * (1.0 - np.exp(-np.power(x, b) / c))


def saturation_slope(x: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray:
    """f'(x) = a·(b/c)·x^(b−1)·exp(−x^b/c), evaluated at x + 1e-6 (finite at 0, as ADELE)."""
    x = np.asarray(x, dtype=float) + 1e-6
    return a * b / c * np.exp(-np.power(x, b) / c) * np.power(x, b - 1.0)


def fit_saturation_curve(y: Sequence[float], x: Sequence[float] | None = None) -> tuple[float, float, float] | None:
    """Least-squares (a, b, c) of `saturation_curve`, or None if the fit fails.

    Args:
        y: (n,) values; x: (n,) positions (default 0..n−1).

    Returns:
        (a, b, c) with 0 ≤ a, b ≤ 1, c ≥ 0, later points weighted more (σ = geomspace(1, 0.1)).
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    y = np.asarray(y, dtype=float)
    x = np.arange(len(y), dtype=float) if x is None else np.asarray(x, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            popt, _ = curve_fit(saturation_curve, x, y, p0=(1.0, 1.0, 1.0), method="trf",
                                sigma=np.geomspace(1.0, 0.1, len(y)), absolute_sigma=True,
                                bounds=([0.0, 0.0, 0.0], [1.0, 1.0, np.inf]))
        except (RuntimeError, ValueError):
            return None
    a, b, c = (float(v) for v in popt)
    return (a, b, c) if all(math.isfinite(v) for v in (a, b, c)) and c > 0 else None


def trim_plateau(y: np.ndarray) -> int:
    """Index where the fit starts: the last point before the curve first reaches
    min + 0.1·(max − min) (0 when it starts there). y: (n,) finite values."""
    lo, hi = float(np.min(y)), float(np.max(y))
    first = int(np.argmax(y >= lo + PLATEAU_FRACTION * (hi - lo)))
    return max(first - 1, 0)


def relative_slope_change(iou_curve: Sequence[float], min_points: int = 10) -> float:
    """|f'(x_n) − f'(1)| / |f'(1)| of the curve fitted to `iou_curve` at its last point x_n.

    Args:
        iou_curve: (n,) IoU per interval, NaN where unknown (skipped).
        min_points: fewer usable points (after the plateau trim) give NaN.

    Returns:
        the relative change in [0, 1] for a fitted curve (its slope only decreases), or NaN.
    """
    y = np.asarray(iou_curve, dtype=float)
    x = np.arange(len(y), dtype=float)
    ok = np.isfinite(y)
    if ok.sum() < min_points:
        return float("nan")
    x, y = x[ok], y[ok]
    start = trim_plateau(y)
    x, y = x[start:] - x[start], y[start:]
    if len(y) < min_points:
        return float("nan")
    params = fit_saturation_curve(y, x)
    if params is None:
        return float("nan")
    d1 = float(saturation_slope(1.0, *params))
    dn = float(saturation_slope(x[-1], *params))
    if not (math.isfinite(d1) and math.isfinite(dn)) or d1 == 0:
        return float("nan")
    change = abs(abs(dn) - abs(d1)) / abs(d1)
    return 0.0 if change > 1 else change  # ADELE: a change above 1 (slope growing) counts as none


def early_learning_ended(iou_curve: Sequence[float], threshold: float = 0.9, min_points: int = 10) -> bool:
    """True when the fitted IoU curve's slope at its last point has dropped by more than
    `threshold` relative to its slope at x = 1 (ADELE's r); see `relative_slope_change`.

    Args:
        iou_curve: (n,) IoU of one class per interval (NaN: unknown).
        threshold: r in (0, 1).
        min_points: minimum number of usable points.
    """
    change = relative_slope_change(iou_curve, min_points)
    return bool(math.isfinite(change) and change > threshold)


# --------------------------------------------------------------------------- correction


def correct_labels(probs: torch.Tensor, label: torch.Tensor, active_classes: torch.Tensor, threshold: float,
                   class_constraint: bool = True, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Labels with confident predictions of active classes written in.

    Pixel i takes ŷ_i = argmax p_i when max p_i > threshold, ŷ_i and ỹ_i are both active, and
    (with `class_constraint`) ŷ_i is class 0 or a class present in ỹ of the same sample.

    Args:
        probs: (N, K, *S) probabilities.
        label: (N, *S) long given labels.
        active_classes: (K,) bool, the classes whose pixels may change (the caller decides
            about background).
        threshold: τ.
        class_constraint: ADELE's per-sample class constraint.
        valid: optional (N, *S) bool, the annotated pixels (only their labels count as present).

    Returns:
        (N, *S) long; equal to `label` wherever no active class is involved.
    """
    conf, pred = probs.detach().max(1)
    act = active_classes.to(device=label.device, dtype=torch.bool)
    change = (conf > threshold) & act[pred] & act[label] & (pred != label)
    if class_constraint:
        n, k = label.shape[0], probs.shape[1]
        present = torch.zeros(n, k, dtype=torch.bool, device=label.device)
        present.scatter_(1, (label if valid is None else label * valid).reshape(n, -1), True)
        allowed = present.gather(1, pred.reshape(n, -1)).view_as(pred) | (pred == 0)
        change &= allowed
    return torch.where(change, pred, label)


def intersection_union(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                       valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class |pred = c ∧ label = c| and |pred = c ∨ label = c| (K,) int64 over the `valid`
    (annotated) pixels, all when None; no host sync."""
    v = None if valid is None else valid.long()
    inter = class_counts(label, num_classes, (pred == label).long() if v is None else (pred == label).long() * v)
    return inter, class_counts(pred, num_classes, v) + class_counts(label, num_classes, v) - inter


# --------------------------------------------------------------------------- the method


class ADELEParams(StrictModel):
    """ADELE hyper-parameters.

    Args:
        r: relative slope change beyond which a class's early learning has ended.
        conf_threshold: τ, the confidence above which a prediction replaces a label.
        curve_points: number of IoU points recorded over the whole training.
        min_points: usable points needed before a fit is attempted.
        class_constraint: only correct to background or a class present in the sample's label.
        tta_flip: confidence from the softmax averaged over flips along each spatial axis.
    """

    r: float = Field(0.9, gt=0.0, lt=1.0)
    conf_threshold: float = Field(0.8, ge=0.0, lt=1.0)
    curve_points: int = Field(50, ge=3)
    min_points: int = Field(10, ge=3)
    class_constraint: bool = True
    tta_flip: bool = False

    @model_validator(mode="after")
    def _points(self) -> ADELEParams:
        if self.min_points > self.curve_points:
            raise ValueError(f"min_points ({self.min_points}) must not exceed curve_points ({self.curve_points})")
        return self


@register
class ADELE(Method):
    """Per-class early-learning detection on the IoU curve, then on-the-fly label correction.
    See the module docstring.

    Buffers: ``iou_curve`` (curve_points, K), ``num_points`` (), ``inter_sum``/``union_sum`` (K,)
    of the current interval, ``active`` (K,) bool, ``detected_step`` (K,) (−1: not yet),
    ``record_interval`` () (0: not yet fixed).
    """

    name = "adele"
    figure_groups = ("adele",)
    Params = ADELEParams
    relative_cost = 1.1

    def __init__(self, params: ADELEParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()
        k = num_classes
        self.register_buffer("iou_curve", torch.full((params.curve_points, k), float("nan")))
        self.register_buffer("num_points", torch.zeros((), dtype=torch.int64))
        self.register_buffer("inter_sum", torch.zeros(k, dtype=torch.int64))
        self.register_buffer("union_sum", torch.zeros(k, dtype=torch.int64))
        self.register_buffer("active", torch.zeros(k, dtype=torch.bool))
        self.register_buffer("detected_step", torch.full((k,), -1, dtype=torch.int64))
        self.register_buffer("record_interval", torch.zeros((), dtype=torch.int64))
        self._interval: int | None = None  # host copy of record_interval
        self.register_load_state_dict_post_hook(_forget_interval)

    # ------------------------------------------------------------------ helpers

    def interval(self, max_steps: int) -> int:
        """Steps per curve point, fixed (and stored) at the first call."""
        if self._interval is None:
            v = int(self.record_interval)
            if v <= 0:
                v = max(1, math.ceil(max_steps / self.params.curve_points))
                self.record_interval.fill_(v)
            self._interval = v
        return self._interval

    def correction_classes(self) -> torch.Tensor:
        """(K,) bool: the active classes, plus background once any foreground class is active."""
        fg = self.active[1:]
        return torch.cat([fg.any().reshape(1), fg])

    @torch.no_grad()
    def confidence_probs(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities used for correction: the training forward's, or flip-averaged."""
        probs = torch.softmax(logits.detach().float(), 1)
        return flip_averaged_probs(self.net, x, probs) if self.params.tta_flip else probs

    @torch.no_grad()
    def record_and_detect(self, step: int) -> None:
        """Close an interval: store its IoU point, fit the curve of every inactive foreground
        class and activate those whose early learning has ended (host work, once per interval)."""
        inter, union = self.inter_sum.clone(), self.union_sum.clone()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(inter)
            dist.all_reduce(union)
        self.inter_sum.zero_()
        self.union_sum.zero_()
        n = int(self.num_points)
        if n >= self.params.curve_points:
            return
        iou = torch.where(union > 0, inter.double() / union.clamp_min(1).double(), torch.nan)
        self.iou_curve[n] = iou.to(self.iou_curve.dtype)
        self.num_points.fill_(n + 1)
        curve = self.iou_curve[: n + 1].cpu().numpy()
        active = self.active.cpu().numpy()
        for c in range(1, self.num_classes):
            if not active[c] and early_learning_ended(curve[:, c], self.params.r, self.params.min_points):
                self.active[c] = True
                self.detected_step[c] = step

    # ------------------------------------------------------------------ training

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        p = self.params
        x, label = batch["image"], batch["label"]
        logits = self.net(x).float()
        with torch.no_grad():
            probs = self.confidence_probs(x, logits)
            valid = batch.get("valid")
            target = correct_labels(probs, label, self.correction_classes(), p.conf_threshold, p.class_constraint,
                                    valid)
            inter, union = intersection_union(logits.detach().argmax(1), label, self.num_classes, valid)
            self.inter_sum += inter
            self.union_sum += union
        loss = ce_dice_loss(logits, target, valid)
        logs = self._logs(label, target, batch)
        if (info.step + 1) % self.interval(info.max_steps) == 0:
            self.record_and_detect(info.step)
        return StepOutput(loss, logs)

    @torch.no_grad()
    def _logs(self, label: torch.Tensor, target: torch.Tensor, batch) -> dict[str, float]:
        """The step's scalars in one tensor, copied to the host once (0/0 → NaN)."""
        fg = range(1, self.num_classes)
        n = self.num_points.clamp(1, self.params.curve_points) - 1
        last = self.iou_curve.index_select(0, n.reshape(1))[0]  # NaN until a point is recorded; a 0-d
        # tensor index would be read on the host (a sync), index_select is not
        changed = (target != label).float()
        names = [f"adele/active/c{c}" for c in fg] + [f"adele/iou/c{c}" for c in fg] + ["adele/corrected_frac"]
        values = [self.active[1:].float(), last[1:].float(), changed.mean().reshape(1)]
        if "clean_label" in batch:
            clean = batch["clean_label"]
            right = (target == clean).float()
            names += ["adele/label_acc_given", "adele/label_acc_corrected", "adele/correction_precision"]
            values.append(torch.stack([(label == clean).float().mean(), right.mean(),
                                       (right * changed).sum() / changed.sum()]))
        return host_values(names, values)

    # ------------------------------------------------------------------ figures

    def write_figures(self, figures_dir: Path, cases, device: torch.device) -> None:
        """`adele_iou_curves.png`: each foreground class's IoU points, the fitted curve and the
        detection point."""
        from ..report.figures import save_figure

        n = int(self.num_points)
        if n == 0 or self.num_classes < 2:
            return
        curve = self.iou_curve[:n].cpu().numpy()
        interval = max(int(self.record_interval), 1)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.4))
        for c in range(1, self.num_classes):
            steps = (np.arange(n) + 1) * interval
            line = ax.plot(steps, curve[:, c], ".", label=f"c{c}")[0]
            y = curve[:, c]
            ok = np.isfinite(y)
            if ok.sum() >= self.params.min_points:
                xs, ys = np.arange(n, dtype=float)[ok], y[ok]
                start = trim_plateau(ys)
                params = fit_saturation_curve(ys[start:], xs[start:] - xs[start])
                if params is not None:
                    grid = np.linspace(0, xs[-1] - xs[start], 200)
                    ax.plot((grid + xs[start] + 1) * interval, saturation_curve(grid, *params),
                            color=line.get_color(), lw=1)
            det = int(self.detected_step[c])
            if det >= 0:
                ax.axvline(det + 1, color=line.get_color(), ls="--", lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("IoU(prediction, given label)")
        ax.legend(fontsize=7)
        save_figure(fig, Path(figures_dir) / "adele_iou_curves.png")


def _forget_interval(module: ADELE, incompatible_keys) -> None:
    """After load_state_dict the stored interval may differ from the cached one."""
    module._interval = None
