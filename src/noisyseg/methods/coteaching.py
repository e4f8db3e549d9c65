"""`coteaching`: Co-teaching (Han et al., "Co-teaching: Robust Training of Deep Neural Networks
with Extremely Noisy Labels", NeurIPS 2018), applied per pixel.

Two networks of the same architecture (different initialisation) are trained on the given,
possibly noisy, labels ỹ. Each step, on the batch's M pixels:

* each network n ranks the pixels by its own cross-entropy ℓⁿ_i = −log pⁿ_i(ỹ_i) and keeps
  the share 1 − R(t) with the smallest loss: the set Sⁿ (small-loss pixels are more likely
  correctly labelled, since networks fit clean patterns before noise);
* each network is trained on its PARTNER's set (cross update): net1 on S², net2 on S¹,
  L = mean_{i∈S²} ℓ¹_i + mean_{i∈S¹} ℓ²_i  (+ soft Dice restricted to the same sets);
* the forget rate ramps up linearly, R(t) = forget_rate · min(t / (gradual_fraction · T), 1),
  with T = max_steps, so that early steps train on (almost) every pixel;
* inference averages the two networks' softmax.

Defaults and decisions (each a [choice]):

* forget_rate = 0.2, the share of pixels dropped once the ramp is over. The paper sets it to
  the noise rate ε when ε is known; 0.2 stands for a moderate share of wrong pixel labels
  and should be set to the expected share when it is known. gradual_fraction = 0.1: the
  paper ramps over T_k = 10 of 200 epochs (5%); 10% of the steps leaves the networks a little
  more time to fit the clean patterns first, since segmentation runs are short in steps.
* The ramp is per step (continuous), not per epoch: the loop has no epochs.
* `rank: class` by default: ranking within each given class, keeping
  round((1 − R)·M_c) pixels of every class c: a guard against a minority class being dropped
  wholesale because its losses are larger early in training. Measured (2D, 150 steps, the
  tiny U-Net of tests/methods/test_clcs.py's end-to-end test, Dice on clean test labels,
  seeds 0/1/2, forget_rate 0.2): on that test's eroded-ellipse task (20-30% foreground, every
  error a background label) both gave the same, class 0.978/0.978/0.971 vs global
  0.977/0.978/0.972 (supervised 0.714/0.767/0.603). On a small-structure variant (3-6
  ellipses of radius 3-7 px in 64², ~5% foreground, training labels dilated by 1-2 px or
  eroded by 1 px per case) class ranking was clearly worse, 0.807/0.819/0.800 vs
  0.950/0.836/0.938 (supervised 0.870/0.929/0.904), with a lower selection precision
  (0.975-0.996 vs 0.999-1.0): it always drops R of the foreground-labelled pixels, their
  hardest ones, i.e. the structures' boundaries, while the feared wholesale drop of the
  foreground did not happen there with the global ranking. It did on real 3D data: on LA
  with MT-Noise (configs/la_morph_cpu.yaml, ~7% foreground, Dice in 3D), the global ranking
  dropped every foreground pixel once R reached 0.2 and both `coteaching` and `trinet`
  collapsed to all-background predictions (test Dice 0). A collapse costs everything, the
  class ranking's price is a few points on tiny structures, so `class` is the default;
  `rank: global` (the paper's rule for balanced image classification: the round((1 − R)·M)
  smallest-loss pixels of the whole batch) stays available.
* Selection is over the whole batch (all images together), as the paper does over a
  mini-batch, not per image. The kept count is exact: ties in loss are broken by the pixel's
  position (flattened index, lower first), so selection is deterministic; rounding is half up.
* Ranking uses the detached CE of the given label (the paper's criterion); the Dice term, if
  any, does not enter the ranking.
* The two networks' losses are summed (each network gets the gradient a single network
  trained on its selection would get), one optimiser for both.
* Dice: on by default in 3D only (as in CLCS's clean loss: "CE (+ Dice in 3D)");
  it is the soft Dice restricted to the partner's selection (`soft_dice_loss` with weight).
* AMP: the networks run under autocast; logits are cast to float32 before any loss.
* Distributed: each process selects within its own batch (no extra communication).

Logs per step: ``forget_rate``, ``kept/net1`` and ``kept/net2`` (share of the batch's pixels
each network selected, i.e. taught to its partner), ``loss/net1`` and ``loss/net2`` (the
selected losses) and, when the batch has ``clean_label``, ``selection/precision`` (share of
selected pixels whose label is correct, pooled over both selections), ``selection/recall``
(share of correctly labelled pixels selected, pooled) and ``selection/base_rate`` (share of
all pixels whose label is correct). Undefined ratios are NaN. One host copy per step.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from ..config import StrictModel
from .base import (
    Method,
    StepInfo,
    StepOutput,
    dice_by_default,
    host_values,
    mean_softmax,
    selection_log_values,
)
from .losses import one_hot, pixel_ce, soft_dice_loss, weighted_mean
from .registry import register

# --------------------------------------------------------------------------- pure pieces


def forget_rate_at(step: int, max_steps: int, forget_rate: float, gradual_fraction: float) -> float:
    """R(t) = forget_rate · min(t / (gradual_fraction · max_steps), 1).

    Args:
        step: the current step t (from 0).
        max_steps: T, the length of training.
        forget_rate: the final share of pixels dropped, in [0, 1).
        gradual_fraction: share of T over which R ramps up linearly; 0 gives forget_rate
            from the first step.

    Returns:
        R(t) in [0, forget_rate].
    """
    ramp = gradual_fraction * max_steps
    if ramp <= 0:
        return float(forget_rate)
    return float(forget_rate) * min(max(step, 0) / ramp, 1.0)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def small_loss_mask(loss_map: torch.Tensor, keep_ratio: float, groups: torch.Tensor | None = None,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask of the smallest-loss pixels.

    Without `groups` and `valid`, keeps exactly round(keep_ratio · M) of the M entries
    (rounded half up). With `groups` (e.g. the given labels), keeps round(keep_ratio · M_g)
    within each group g separately. With `valid`, only valid entries are ranked and counted
    (M_g counts valid entries; invalid ones are never kept). Ties in loss are broken by the
    flattened position (lower index first), so the result is deterministic; NaN losses rank
    last. No host synchronisation (sorts and scans on the loss's device).

    Args:
        loss_map: (N, *S) per-pixel losses (any float dtype; no gradient is taken).
        keep_ratio: share to keep, in [0, 1].
        groups: optional (N, *S) non-negative integer group of each pixel.
        valid: optional (N, *S) bool; False entries are excluded.

    Returns:
        (N, *S) bool.
    """
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    flat = loss_map.detach().reshape(-1)
    m = flat.numel()
    dev = flat.device
    order = torch.argsort(flat, stable=True)  # ascending loss, ties by index
    keep = torch.zeros(m, dtype=torch.bool, device=dev)
    if groups is None and valid is None:
        keep[order[:_round_half_up(keep_ratio * m)]] = True
        return keep.view(loss_map.shape)
    g = groups.reshape(-1).long() if groups is not None else torch.zeros(m, dtype=torch.long, device=dev)
    if valid is not None:
        g = torch.where(valid.reshape(-1).bool(), g + 1, 0)  # group 0 collects the invalid entries
    # stable sort by group after the stable sort by loss: within a group, ascending loss
    order = order[torch.argsort(g[order], stable=True)]
    gs = g[order]
    pos = torch.arange(m, device=dev)
    first = torch.ones(m, dtype=torch.bool, device=dev)
    first[1:] = gs[1:] != gs[:-1]
    last = torch.ones(m, dtype=torch.bool, device=dev)
    last[:-1] = first[1:]
    start = torch.where(first, pos, 0).cummax(0).values  # first position of each entry's group
    end = torch.where(last, pos, m).flip(0).cummin(0).values.flip(0)  # its last position
    count = (end - start + 1).double()
    n_keep = torch.floor(keep_ratio * count + 0.5)  # float64: the same rounding as the global path
    keep_sorted = (pos - start).double() < n_keep
    if valid is not None:
        keep_sorted &= gs > 0
    keep[order] = keep_sorted
    return keep.view(loss_map.shape)


# --------------------------------------------------------------------------- the method


class CoTeachingParams(StrictModel):
    """Co-teaching hyper-parameters.

    Args:
        forget_rate: final share of pixels each network drops (the largest losses), in [0, 1).
        gradual_fraction: share of max_steps over which the forget rate ramps up from 0.
        rank: 'global' ranks all pixels of the batch together; 'class' ranks pixels within
            each given class (keeps 1 − R of every class).
        dice: add soft Dice restricted to the selected pixels; None = only for 3D training.
        inference: 'mean' of the two networks' softmax, or one network alone.
    """

    forget_rate: float = Field(0.2, ge=0.0, lt=1.0)
    gradual_fraction: float = Field(0.1, ge=0.0, le=1.0)
    rank: Literal["global", "class"] = "class"
    dice: bool | None = None
    inference: Literal["mean", "net1", "net2"] = "mean"


def selected_loss(logits: torch.Tensor, ce: torch.Tensor, label: torch.Tensor, selected: torch.Tensor,
                  use_dice: bool, target: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CE over the selected pixels (+ soft Dice restricted to them).

    Args:
        logits: (N, K, *S) float32 logits of the network being trained.
        ce: (N, *S) its per-pixel CE on `label`.
        label: (N, *S) given labels.
        selected: (N, *S) bool, the pixels it learns from.
        target: one_hot(label) (N, K, *S) when the caller has it (built here otherwise).
    """
    w = selected.float()
    loss = weighted_mean(ce, w)
    if use_dice:
        target = one_hot(label, logits.shape[1]) if target is None else target
        loss = loss + soft_dice_loss(torch.softmax(logits, 1), target, w)
    return loss


@register
class CoTeaching(Method):
    """Two networks, each trained on the pixels its partner finds small-loss (see module doc)."""

    name = "coteaching"
    Params = CoTeachingParams

    def __init__(self, params: CoTeachingParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net1 = make_net()
        self.net2 = make_net()  # the torch RNG has advanced: a different initialisation
        self.use_dice = dice_by_default(params.dice, spatial_dims)

    def forget_rate(self, info: StepInfo) -> float:
        """R(t) for this step."""
        return forget_rate_at(info.step, info.max_steps, self.params.forget_rate, self.params.gradual_fraction)

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        x, label = batch["image"], batch["label"]
        logits1, logits2 = self.net1(x).float(), self.net2(x).float()
        ce1, ce2 = pixel_ce(logits1, label), pixel_ce(logits2, label)
        rate = self.forget_rate(info)
        groups = label if self.params.rank == "class" else None
        valid = batch.get("valid")  # unannotated pixels are never selected
        sel1 = small_loss_mask(ce1, 1.0 - rate, groups, valid)  # net1's small-loss pixels: teach net2
        sel2 = small_loss_mask(ce2, 1.0 - rate, groups, valid)  # net2's small-loss pixels: teach net1
        target = one_hot(label, self.num_classes) if self.use_dice else None  # shared by both losses
        loss1 = selected_loss(logits1, ce1, label, sel2, self.use_dice, target)
        loss2 = selected_loss(logits2, ce2, label, sel1, self.use_dice, target)
        return StepOutput(loss1 + loss2, self._logs(rate, (sel1, sel2), (loss1, loss2), batch))

    @torch.no_grad()
    def _logs(self, rate: float, sels: tuple[torch.Tensor, ...], losses: tuple[torch.Tensor, ...], batch) -> dict:
        """Every scalar of the step in one tensor, copied to the host once."""
        names = [f"kept/net{n + 1}" for n in range(len(sels))] + [f"loss/net{n + 1}" for n in range(len(losses))]
        values = [torch.stack([s.float().mean() for s in sels]), torch.stack([v.detach().float() for v in losses])]
        if "clean_label" in batch:
            sel_names, sel_values = selection_log_values(sels, batch["label"], batch["clean_label"],
                                                        self.num_classes)
            names += sel_names
            values.append(sel_values)
        return {"forget_rate": rate, **host_values(names, values)}

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the two networks' softmax (N, K, *S), or one network by `params.inference`."""
        mode = self.params.inference
        return mean_softmax([self.net1, self.net2] if mode == "mean" else [getattr(self, mode)], x)
