"""`mtcl`: Mean-Teacher-assisted Confident Learning (Xu et al., MICCAI 2021; IEEE TMI 2022).

A student S and a teacher T = EMA of the student's weights. Each step, with the teacher's
probabilities q = softmax(T(x)): confident learning (Northcutt et al., JAIR 2021) per batch
flags likely label errors (per-class thresholds t_j = mean q_j over the pixels labelled j,
the calibrated confident joint, pruning rule `cl_filter`, default ``both``); the student loss is
L = L_sup + λ_corr·L_corr + w(t)·L_cons: CE + soft Dice on the unflagged pixels,
CE of the flagged pixels against the corrected label s·onehot(argmax q) + (1 − s)·onehot(ỹ)
(normalised by all pixels), and the consistency (p − softmax(T(x + ε)))² with a sigmoid
ramp-up. Teacher update after each step: θ_T ← α·θ_T + (1 − α)·θ_S. Confident learning runs
in torch on the batch's device and flags the same pixels as cleanlab's `find_label_issues`.

Batch: image (N, C, *S), label (N, *S) [, clean_label, valid]. Parameters: `MTCLParams`.
Logs: ``mtcl/threshold/c{k}``, ``mtcl/flagged_frac``, ``mtcl/cons_weight``, ``mtcl/agreement``
(the gate's running agreement, NaN once open), ``loss/sup``,
``loss/corr``, ``loss/cons``; with ``clean_label`` ``mtcl/wrong_label_rate``,
``mtcl/flag_precision``, ``mtcl/flag_recall``, ``mtcl/correction_acc``.
Design choices, the cleanlab comparison and cost: docs/methods/mtcl.md.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from pydantic import Field

from ..config import StrictModel
from .base import Method, StepInfo, StepOutput, class_counts, host_values
from .losses import one_hot, soft_dice_loss, weighted_mean, with_valid
from .meta_warmup import MetaWarmup
from .shared import frozen_norm_stats
from .registry import register

CLFilter = Literal["both", "prune_by_noise_rate", "prune_by_class", "confident_learning"]

FLOAT_TOL = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON
THRESHOLD_FLOOR = 2e-6  # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
ABSENT_CLASS_THRESHOLD = 2.0  # cleanlab's threshold for a class no pixel is labelled with
MIN_PER_CLASS = 1  # cleanlab's min_examples_per_class default


# --------------------------------------------------------------------------- confident learning


def _flatten(probs: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, *S), (N, *S) → (M, K), (M,); (M, K), (M,) pass through."""
    if probs.ndim == 2:
        return probs, label.reshape(-1)
    k = probs.shape[1]
    return probs.movedim(1, -1).reshape(-1, k), label.reshape(-1)


def confident_thresholds(probs: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """t_j = mean probability of class j over the pixels labelled j (cleanlab's thresholds).

    Args:
        probs: (M, K) or (N, K, *S) probabilities.
        label: (M,) or (N, *S) long given labels.

    Returns:
        (K,) in the dtype of `probs`, floored at 2e-6; 2 for classes no pixel is labelled with.
        The sums are accumulated in float64: a float32 running sum over 10⁵-10⁶ pixels drifts
        by more than the 1e-6 tolerance of the confidence test (numpy's pairwise sum does not).
    """
    p, y = _flatten(probs, label)
    k = p.shape[1]
    counts = class_counts(y, k)
    self_conf = p.gather(1, y.unsqueeze(1)).squeeze(1).double()
    sums = torch.zeros(k, dtype=torch.float64, device=p.device).index_add_(0, y, self_conf)
    t = torch.where(counts > 0, sums / counts.clamp_min(1).double(), torch.full_like(sums, ABSENT_CLASS_THRESHOLD))
    return t.clamp_min(THRESHOLD_FLOOR).to(p.dtype)


def confident_joint(probs: torch.Tensor, label: torch.Tensor, thresholds: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (uncalibrated) confident joint and each pixel's confident class.

    A pixel is confidently of class j when p_j ≥ t_j − 1e-6; with several such classes the
    one of largest p wins. C[ỹ, j] counts the confident pixels by given label and confident
    class; the diagonal is floored at 1 (cleanlab's `compute_confident_joint`).

    Args:
        probs: (M, K) or (N, K, *S); label: (M,) or (N, *S) long.
        thresholds: (K,) or None for `confident_thresholds`.

    Returns:
        (C (K, K) int64, confident class (M,) long, is confident (M,) bool).
    """
    p, y = _flatten(probs, label)
    k = p.shape[1]
    t = confident_thresholds(p, y) if thresholds is None else thresholds.to(p.dtype)
    above = p >= t - FLOAT_TOL
    n_above = above.sum(1)
    guess = torch.where(n_above > 1, p.argmax(1), above.to(torch.uint8).argmax(1))  # first True if one
    confident = n_above > 0
    cj = torch.zeros(k * k, dtype=torch.int64, device=p.device).index_add_(0, y * k + guess, confident.long())
    cj = cj.view(k, k)
    eye = torch.eye(k, dtype=torch.bool, device=p.device)
    return torch.where(eye, cj.clamp_min(1), cj), guess, confident


def round_preserving_row_totals(x: torch.Tensor) -> torch.Tensor:
    """Round each row to integers so that it keeps its (rounded) total (cleanlab's rule).

    Entries are rounded half to even; a row whose rounded entries miss its rounded total by
    d > 0 adds 1 to the d entries with the largest x − round(x) (ties: later entry first), by
    d < 0 subtracts 1 from the |d| entries with the smallest (ties: earlier entry first).

    Args:
        x: (K, K) float.

    Returns:
        (K, K) float with integer values.
    """
    ints = torch.round(x)
    diff = torch.round(x.sum(1)) - ints.sum(1)
    order = torch.sort(x - ints, dim=1, stable=True).indices
    k = x.shape[1]
    pos = torch.arange(k, device=x.device).expand_as(order)
    rank_up = torch.empty_like(order).scatter_(1, order, pos)
    rank_down = k - 1 - rank_up
    up = (diff > 0).unsqueeze(1) & (rank_down < diff.unsqueeze(1))
    down = (diff < 0).unsqueeze(1) & (rank_up < -diff.unsqueeze(1))
    return ints + up.to(x.dtype) - down.to(x.dtype)


def calibrate_confident_joint(cj: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Rows rescaled to the label counts, the whole to their total, rounded row-preservingly.

    Args:
        cj: (K, K) confident joint; counts: (K,) pixels per given class.

    Returns:
        (K, K) float64 with integer values; row k sums to counts[k].
    """
    c = cj.double()
    n = counts.double()
    cal = c / c.sum(1).clamp_min(1e-100).unsqueeze(1) * n.unsqueeze(1)
    cal = cal / cal.sum().clamp_min(1e-100) * n.sum()
    return round_preserving_row_totals(cal)


def prune_counts(calibrated: torch.Tensor) -> torch.Tensor:
    """How many pixels to prune from each given class toward each true class.

    cleanlab's `_keep_at_least_n_per_class` with n = 1 and frac_noise = 1, in given × true
    orientation: a diagonal below 1 is raised to 1 and the increase is taken evenly from the
    row's other non-zero entries (floored at 0), then everything is truncated to integers.

    Args:
        calibrated: (K, K) calibrated confident joint (rows: given label).

    Returns:
        (K, K) float64 with integer values; off-diagonal [k, j]: prune count, diagonal: kept.
    """
    k = calibrated.shape[0]
    eye = torch.eye(k, dtype=torch.bool, device=calibrated.device)
    d = calibrated.diagonal()
    new_d = d.clamp_min(MIN_PER_CLASS)
    per_entry = (new_d - d) / ((calibrated != 0).sum(1) - 1).clamp_min(1).to(calibrated.dtype)
    new = (calibrated - per_entry.unsqueeze(1)).clamp_min(0)
    return torch.floor(torch.where(eye, new_d.unsqueeze(1).expand_as(new), new))


def _rank_within_class(group: torch.Tensor, score: torch.Tensor, num_classes: int, descending: bool,
                       counts: torch.Tensor) -> torch.Tensor:
    """Rank (0 = first) of every pixel's score among the pixels of its class, ties by index.

    Args:
        group: (M,) long class of each pixel; score: (M,) float.
        counts: (K,) pixels per class, `class_counts(group, num_classes)`.

    Returns:
        (M,) long.
    """
    order = torch.sort(score, descending=descending, stable=True).indices
    order = order[torch.sort(group[order], stable=True).indices]  # by class, then by score
    starts = torch.cumsum(counts, 0) - counts
    ranks_sorted = torch.arange(group.numel(), device=group.device) - starts[group[order]]
    return torch.empty_like(ranks_sorted).scatter_(0, order, ranks_sorted)


def find_label_issues(probs: torch.Tensor, label: torch.Tensor, filter_by: CLFilter = "both",
                      thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """Pixels whose given label confident learning flags as wrong (no host sync).

    The torch counterpart of ``cleanlab.filter.find_label_issues(labels, pred_probs,
    filter_by=filter_by)`` (cleanlab 2.9, default frac_noise = 1, min_examples_per_class = 1);
    see the module docstring for what is matched.

    Args:
        probs: (N, K, *S) or (M, K) probabilities (float64 for bit-exact agreement with cleanlab
            on float64 input; float32 is what training uses).
        label: (N, *S) or (M,) long given labels.
        filter_by: 'prune_by_class', 'prune_by_noise_rate', 'both' (pixels flagged by both) or
            'confident_learning' (pixels off the diagonal of the confident joint).
        thresholds: (K,) class thresholds when already computed (`confident_thresholds`).

    Returns:
        bool, shaped like `label`.
    """
    p, y = _flatten(probs.detach(), label)
    k = p.shape[1]
    cj, guess, confident = confident_joint(p, y, thresholds)
    if filter_by == "confident_learning":
        flags = confident & (guess != y)
    else:
        counts = class_counts(y, k)
        prune = prune_counts(calibrate_confident_joint(cj, counts))
        eligible = (counts > MIN_PER_CLASS)[y]
        self_conf = p.gather(1, y.unsqueeze(1)).squeeze(1)
        by_class = by_rate = None
        if filter_by in ("prune_by_class", "both"):
            n_issues = counts.double() - prune.diagonal()
            by_class = eligible & (_rank_within_class(y, self_conf, k, descending=False, counts=counts) < n_issues[y])
        if filter_by in ("prune_by_noise_rate", "both"):
            by_rate = torch.zeros_like(eligible)
            for j in range(k):  # loop over classes, not pixels
                rank = _rank_within_class(y, p[:, j] - self_conf, k, descending=True, counts=counts)
                by_rate |= (y != j) & (rank < prune[:, j][y])
            by_rate &= eligible
        if by_class is None:
            flags = by_rate
        elif by_rate is None:
            flags = by_class
        else:
            flags = by_class & by_rate
    bumped = p.scatter_add(1, y.unsqueeze(1), torch.full_like(p[:, :1], FLOAT_TOL))
    flags = flags & (bumped.argmax(1) != y)
    return flags.view(label.shape)


# --------------------------------------------------------------------------- mean teacher


def sigmoid_rampup(progress: float, length: float) -> float:
    """exp(−5(1 − min(progress/length, 1))²), 1 for length 0 (Laine & Aila; the MT code's ramp)."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(progress / length, 0.0), 1.0)
    return math.exp(-5.0 * phase * phase)


def ema_decay_at(step: int, ema_decay: float) -> float:
    """α = min(1 − 1/(step + 1), ema_decay): a true average for the first steps."""
    return min(1.0 - 1.0 / (step + 1), ema_decay)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, alpha: float) -> None:
    """θ_T ← α·θ_T + (1 − α)·θ_S for parameters and floating buffers; other buffers copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
    for t, s in zip(teacher.buffers(), student.buffers()):
        if t.is_floating_point():
            t.mul_(alpha).add_(s, alpha=1.0 - alpha)
        else:
            t.copy_(s)


# --------------------------------------------------------------------------- the method


class MTCLParams(StrictModel):
    """MTCL hyper-parameters.

    Args:
        ema_decay: maximum EMA decay α of the teacher.
        consistency_weight: λ_cons, the consistency weight after ramp-up.
        consistency_rampup: fraction of training over which the sigmoid ramp-up of λ_cons runs
            (0: no ramp-up).
        noise_std: σ of the Gaussian noise on the teacher's consistency input.
        noise_clip: the noise is clipped to ±noise_clip.
        cl_start: fraction of training before confident learning may start (warm-up: CE + Dice
            on all pixels plus consistency).
        cl_start_agreement: [choice] confident learning also waits until the teacher finds every
            given foreground class: the running mean (momentum 0.9) of `class_agreement` of the
            teacher's training predictions must reach this value (the gate of `meta_start`,
            `meta_warmup.MetaWarmup`). 0: start at `cl_start` alone (MTCL).
        cl_filter: cleanlab `filter_by` rule that flags label errors.
        lambda_corrected: λ_corr, weight of the CE on corrected labels of flagged pixels.
        correction_strength: s of the corrected soft label s·onehot(teacher) + (1 − s)·onehot(ỹ)
            (1: hard teacher argmax; 0.8: MTCL's fixed smoothing).
        inference: network used by `predict_proba`.
    """

    ema_decay: float = Field(0.99, ge=0.0, le=1.0)
    consistency_weight: float = Field(0.1, ge=0.0)
    consistency_rampup: float = Field(1.0, ge=0.0, le=1.0)
    noise_std: float = Field(0.1, ge=0.0)
    noise_clip: float = Field(0.2, ge=0.0)
    cl_start: float = Field(0.1, ge=0.0, le=1.0)
    cl_start_agreement: float = Field(0.3, ge=0.0, le=1.0)
    cl_filter: CLFilter = "both"
    lambda_corrected: float = Field(1.0, ge=0.0)
    correction_strength: float = Field(1.0, ge=0.0, le=1.0)
    inference: Literal["student", "teacher"] = "student"


@register
class MTCL(Method):
    """Student + EMA teacher; the teacher's confident learning flags and corrects label errors.
    See the module docstring. Submodules: ``net`` (student, trained), ``teacher`` (EMA, frozen)."""

    name = "mtcl"
    figure_groups = ("mtcl",)
    Params = MTCLParams
    relative_cost = 1.9

    def __init__(self, params: MTCLParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()
        self.teacher = copy.deepcopy(self.net)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.cl_gate = MetaWarmup(params.cl_start_agreement)
        self._cl_open = False  # host copy of the gate once it is open: no device read per step after

    # ------------------------------------------------------------------ helpers

    def cl_active(self, info: StepInfo) -> bool:
        """Past `cl_start` and the teacher finds every class (`cl_start_agreement`)."""
        if not self._cl_open:
            self._cl_open = not self.cl_gate.active
        return info.progress >= self.params.cl_start and self._cl_open

    def consistency_weight(self, info: StepInfo) -> float:
        p = self.params
        return p.consistency_weight * sigmoid_rampup(info.progress, p.consistency_rampup)

    @torch.no_grad()
    def teacher_probs(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(T(x)) (N, K, *S) float32; the teacher's running statistics stay untouched."""
        with frozen_norm_stats(self.teacher):
            return torch.softmax(self.teacher(x).float(), 1)

    def noisy(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        return x + torch.clamp(torch.randn_like(x) * p.noise_std, -p.noise_clip, p.noise_clip)

    # ------------------------------------------------------------------ training

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        p = self.params
        x, label = batch["image"], batch["label"]
        k = self.num_classes
        logp = torch.log_softmax(self.net(x).float(), 1)
        probs = logp.exp()
        q_noisy = self.teacher_probs(self.noisy(x))
        l_cons = ((probs - q_noisy) ** 2).mean()
        w_cons = self.consistency_weight(info)

        lab = label.unsqueeze(1)
        ce = -logp.gather(1, lab).squeeze(1)
        given = one_hot(label, k)
        valid = batch.get("valid")
        if not self._cl_open:
            self.cl_gate.update(q_noisy.argmax(1), label, k, valid)
        if self.cl_active(info):
            q = self.teacher_probs(x)
            if valid is None:
                thr = confident_thresholds(q, label)
                flags = find_label_issues(q, label, p.cl_filter, thr)
            else:  # confident learning over the annotated pixels only
                qv, yv = q.movedim(1, -1)[valid], label[valid]
                thr = confident_thresholds(qv, yv)
                flags = torch.zeros_like(valid)
                flags[valid] = find_label_issues(qv, yv, p.cl_filter, thr)
            keep = (~flags).float()
            teacher_label = q.argmax(1)
            s = p.correction_strength
            target = s * one_hot(teacher_label, k) + (1.0 - s) * given
            l_corr = (flags.float() * -(target * logp).sum(1)).sum() / flags.numel()
        else:
            flags = torch.zeros_like(label, dtype=torch.bool)
            thr = torch.full((k,), float("nan"), device=x.device)
            keep, teacher_label = None, None
            l_corr = torch.zeros((), device=x.device)
        keep = with_valid(keep, valid)
        l_sup = weighted_mean(ce, keep) + soft_dice_loss(probs, given, keep)
        loss = l_sup + p.lambda_corrected * l_corr + w_cons * l_cons
        terms = {"loss/sup": l_sup.detach(), "loss/corr": l_corr.detach(), "loss/cons": l_cons.detach()}
        return StepOutput(loss, self._logs(thr, flags, teacher_label, w_cons, batch, terms))

    @torch.no_grad()
    def _logs(self, thr, flags, teacher_label, w_cons, batch, terms) -> dict[str, float]:
        """Every scalar of the step in one tensor, copied to the host once (0/0 → NaN)."""
        k = self.num_classes
        f = flags.float()
        names = ([f"mtcl/threshold/c{c}" for c in range(k)] + ["mtcl/flagged_frac", "mtcl/cons_weight", "mtcl/agreement"]
                 + list(terms))
        gate = self.cl_gate
        agreement = torch.where(gate.meta_on, torch.full_like(gate.agreement, math.nan), gate.agreement)
        values = [thr.float(), f.mean().reshape(1), f.new_full((1,), w_cons),  # a fill: no host-to-device copy
                  agreement.reshape(1),
                  torch.stack([v.float() for v in terms.values()])]
        if "clean_label" in batch:
            clean = batch["clean_label"]
            wrong = (batch["label"] != clean).float()
            both = (wrong * f).sum()
            fixed = ((teacher_label == clean).float() * f).sum() if teacher_label is not None else f.sum() * 0
            names += ["mtcl/wrong_label_rate", "mtcl/flag_precision", "mtcl/flag_recall", "mtcl/correction_acc"]
            values.append(torch.stack([wrong.mean(), both / f.sum(), both / wrong.sum(), fixed / f.sum()]))
        return host_values(names, values)

    def after_step(self, info: StepInfo) -> None:
        """EMA of the student into the teacher (parameters and floating buffers)."""
        ema_update(self.teacher, self.net, ema_decay_at(info.step, self.params.ema_decay))

    # ------------------------------------------------------------------ inference and figures

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """softmax of the student (default) or of the teacher, (N, K, *S)."""
        net = self.teacher if self.params.inference == "teacher" else self.net
        return torch.softmax(net(x).float(), 1)
