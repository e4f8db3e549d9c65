"""`coteaching`: Co-teaching (Han et al., NeurIPS 2018), applied per pixel.

Two networks (different initialisation). Each ranks the batch's pixels by its own
cross-entropy ℓⁿ_i = −log pⁿ_i(ỹ_i) and keeps the share 1 − R(t) with the smallest loss (Sⁿ);
each network trains on its partner's set: L = mean_{S²} ℓ¹ + mean_{S¹} ℓ² (+ soft Dice, on by
default, over every annotated pixel against ỹ; `dice_pixels: selected` restricts it to the same
sets). R(t) = forget_rate·min(t / (gradual_fraction·T), 1). `rank: class` (default) ranks
within each given class, `rank: global` over the whole batch (the paper's). Inference averages
the two networks' softmax.

Batch: image (N, C, *S), label (N, *S) [, clean_label, valid]. Parameters:
`CoTeachingParams` (forget_rate 0.2, gradual_fraction 0.1).
Logs: ``forget_rate``, ``kept/net1``, ``kept/net2``, ``loss/net1``, ``loss/net2``; with
``clean_label`` ``selection/*`` (precision, recall, base rate, per class).
Design choices and measurements: docs/methods/coteaching.md.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from ..config import StrictModel
from .base import (
    SELECTION_FIGURE_GROUPS,
    Method,
    StepInfo,
    StepOutput,
    mean_softmax,
    selection_host_values,
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
        dice: add a soft Dice term (2D and 3D; off: CE alone).
        dice_pixels: [choice] the pixels of that Dice term: 'all' annotated pixels against the
            given labels (default, 2D and 3D, as CLCS) or 'selected' (the ones the CE learns
            from). Measured: docs/methods/coteaching.md.
        inference: 'mean' of the two networks' softmax, or one network alone.
    """

    forget_rate: float = Field(0.2, ge=0.0, lt=1.0)
    gradual_fraction: float = Field(0.1, ge=0.0, le=1.0)
    rank: Literal["global", "class"] = "class"
    dice: bool = True
    dice_pixels: Literal["selected", "all"] = "all"
    inference: Literal["mean", "net1", "net2"] = "mean"


def selected_loss(logits: torch.Tensor, ce: torch.Tensor, label: torch.Tensor, selected: torch.Tensor,
                  use_dice: bool, target: torch.Tensor | None = None, dice_pixels: str = "all",
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CE over the selected pixels (+ soft Dice over them, or over every annotated pixel).

    Args:
        logits: (N, K, *S) float32 logits of the network being trained.
        ce: (N, *S) its per-pixel CE on `label`.
        label: (N, *S) given labels.
        selected: (N, *S) bool, the pixels it learns from.
        target: one_hot(label) (N, K, *S) when the caller has it (built here otherwise).
        dice_pixels: the Dice term's pixels: 'selected' or 'all' (those `valid` marks).
        valid: (N, *S) bool annotated pixels, or None when every pixel is.
    """
    w = selected.float()
    loss = weighted_mean(ce, w)
    if use_dice:
        target = one_hot(label, logits.shape[1]) if target is None else target
        dice_w = w if dice_pixels == "selected" else (None if valid is None else valid.float())
        loss = loss + soft_dice_loss(torch.softmax(logits, 1), target, dice_w)
    return loss


@register
class CoTeaching(Method):
    """Two networks, each trained on the pixels its partner finds small-loss (see module doc)."""

    name = "coteaching"
    figure_groups = ("kept", *SELECTION_FIGURE_GROUPS)
    Params = CoTeachingParams
    relative_cost = 2.2

    def __init__(self, params: CoTeachingParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net1 = make_net()
        self.net2 = make_net()  # the torch RNG has advanced: a different initialisation

    @property
    def use_dice(self) -> bool:
        """Whether the loss has a soft Dice term (`params.dice`)."""
        return self.params.dice

    @property
    def dice_pixels(self) -> str:
        """The Dice term's pixels, 'all' or 'selected' (`params.dice_pixels`)."""
        return self.params.dice_pixels

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
        loss1 = selected_loss(logits1, ce1, label, sel2, self.use_dice, target, self.dice_pixels, valid)
        loss2 = selected_loss(logits2, ce2, label, sel1, self.use_dice, target, self.dice_pixels, valid)
        return StepOutput(loss1 + loss2, self._logs(rate, (sel1, sel2), (loss1, loss2), batch))

    @torch.no_grad()
    def _logs(self, rate: float, sels: tuple[torch.Tensor, ...], losses: tuple[torch.Tensor, ...], batch) -> dict:
        """Every scalar of the step in one tensor, copied to the host once."""
        names = [f"kept/net{n + 1}" for n in range(len(sels))] + [f"loss/net{n + 1}" for n in range(len(losses))]
        values = [torch.stack([s.float().mean() for s in sels]), torch.stack([v.detach().float() for v in losses])]
        return {"forget_rate": rate, **selection_host_values(names, values, sels, batch, self.num_classes)}

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the two networks' softmax (N, K, *S), or one network by `params.inference`."""
        mode = self.params.inference
        return mean_softmax([self.net1, self.net2] if mode == "mean" else [getattr(self, mode)], x)
