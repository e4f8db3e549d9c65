"""`trinet`: Tri-network (Zhang, Yu, Hu, Lv & Gu, MICCAI 2020).

Three networks (different initialisation); two agree to teach the third. For network i with
peers j, k: the agreed pixels A_i = {ŷʲ = ŷᵏ}; within A_i the share 1 − R(t) with the smallest
mean teacher loss ½(ℓʲ + ℓᵏ) is kept (S_i); L = Σ_i mean_{S_i} ℓⁱ (+ soft Dice, on by default,
over every annotated pixel against ỹ; `dice_pixels: selected` restricts it to S_i). R(t) is
Co-teaching's ramp; during the warm-up (`warmup_fraction`) the agreement test is off.
`rank: class` (default) or `global`, as in `coteaching`. Inference averages the three networks'
softmax.

Batch: image (N, C, *S), label (N, *S) [, clean_label, valid]. Parameters: `TriNetParams`.
Logs: ``forget_rate``, ``agree/net{i}``, ``kept/net{i}``, ``loss/net{i}``; with
``clean_label`` ``selection/*``. Design choices and measurements: docs/methods/trinet.md.
"""

from __future__ import annotations

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
from .coteaching import CoTeaching, selected_loss, small_loss_mask
from .losses import one_hot, pixel_ce
from .registry import register

PEERS = ((1, 2), (0, 2), (0, 1))  # the two teachers of each network


def agreement_small_loss_mask(loss_j: torch.Tensor, loss_k: torch.Tensor, pred_j: torch.Tensor,
                              pred_k: torch.Tensor, keep_ratio: float, groups: torch.Tensor | None = None,
                              require_agreement: bool = True, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The pixels two teachers j, k select for the third network.

    Agreed pixels A = {pred_j = pred_k}; within A (and within each group, if given) keeps
    the round(keep_ratio · |A|) pixels with the smallest ½(loss_j + loss_k); ties by position.
    With `require_agreement=False` (warm-up) A is every pixel.

    Args:
        loss_j, loss_k: (N, *S) per-pixel losses of the two teachers on the given labels.
        pred_j, pred_k: (N, *S) their predicted classes.
        keep_ratio: share of the agreed pixels to keep, in [0, 1].
        groups: optional (N, *S) group of each pixel (e.g. the given label).
        require_agreement: restrict the selection to the agreed pixels.
        valid: optional (N, *S) bool, the annotated pixels (the others are never selected).

    Returns:
        (N, *S) bool, a subset of A.
    """
    agree = (pred_j == pred_k) if require_agreement else None
    if valid is not None:
        agree = valid if agree is None else agree & valid
    score = 0.5 * (loss_j.detach().float() + loss_k.detach().float())
    return small_loss_mask(score, keep_ratio, groups=groups, valid=agree)


class TriNetParams(StrictModel):
    """Tri-network hyper-parameters.

    Args:
        forget_rate: final share of the agreed pixels dropped (the largest teacher losses), in [0, 1).
        gradual_fraction: share of max_steps over which the forget rate ramps up from 0.
        warmup_fraction: share of max_steps before the agreement test starts (until then each
            network learns from its teachers' small-loss pixels among all pixels).
        rank: 'global' ranks all agreed pixels together; 'class' ranks them within each given class.
        dice: add a soft Dice term (2D and 3D; off: CE alone).
        dice_pixels: [choice] the pixels of that Dice term: 'all' annotated pixels against the
            given labels (default, 2D and 3D) or 'selected' (as `coteaching`).
        inference: 'mean' of the three networks' softmax, or one network alone.
    """

    forget_rate: float = Field(0.2, ge=0.0, lt=1.0)
    gradual_fraction: float = Field(0.1, ge=0.0, le=1.0)
    warmup_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    rank: Literal["global", "class"] = "class"
    dice: bool = True
    dice_pixels: Literal["selected", "all"] = "all"
    inference: Literal["mean", "net1", "net2", "net3"] = "mean"


@register
class TriNet(Method):
    """Three networks; each is trained on the agreed, small-loss pixels of the other two (see module doc)."""

    name = "trinet"
    figure_groups = ("kept", "agree", *SELECTION_FIGURE_GROUPS)
    Params = TriNetParams
    relative_cost = 3.4

    def __init__(self, params: TriNetParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net1 = make_net()
        self.net2 = make_net()  # the torch RNG advances between calls: three different initialisations
        self.net3 = make_net()

    @property
    def nets(self) -> tuple:
        return (self.net1, self.net2, self.net3)

    forget_rate = CoTeaching.forget_rate  # R(t) for this step, the same schedule
    use_dice = CoTeaching.use_dice
    dice_pixels = CoTeaching.dice_pixels

    def warmup_steps(self, max_steps: int) -> int:
        return round(self.params.warmup_fraction * max_steps)

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        x, label = batch["image"], batch["label"]
        logits = [net(x).float() for net in self.nets]
        ces = [pixel_ce(lg, label) for lg in logits]
        preds = [lg.detach().argmax(1) for lg in logits]
        rate = self.forget_rate(info)
        valid = batch.get("valid")
        sels = self.select(ces, preds, label, rate, info.step >= self.warmup_steps(info.max_steps), valid)
        target = one_hot(label, self.num_classes) if self.use_dice else None  # shared by the three losses
        losses = [selected_loss(logits[i], ces[i], label, sels[i], self.use_dice, target, self.dice_pixels, valid)
                  for i in range(3)]
        agrees = [preds[j] == preds[k] for j, k in PEERS]
        loss = losses[0] + losses[1] + losses[2]
        return StepOutput(loss, self._logs(rate, sels, agrees, losses, batch))

    def select(self, ces: list[torch.Tensor], preds: list[torch.Tensor], label: torch.Tensor, rate: float,
               agreeing: bool = True, valid: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The training pixels S_i of each network i, chosen by its two peers only.

        Args:
            ces: three (N, *S) per-pixel CE maps on the given labels.
            preds: three (N, *S) predicted classes.
            label: (N, *S) given labels (the groups under `rank: class`).
            rate: the forget rate R(t).
            agreeing: apply the agreement test (off during warm-up).
            valid: optional (N, *S) bool, the annotated pixels.

        Returns:
            three (N, *S) bool masks.
        """
        groups = label if self.params.rank == "class" else None
        return [agreement_small_loss_mask(ces[j], ces[k], preds[j], preds[k], 1.0 - rate, groups, agreeing, valid)
                for j, k in PEERS]

    @torch.no_grad()
    def _logs(self, rate: float, sels: list, agrees: list, losses: list, batch) -> dict:
        """Every scalar of the step in one tensor, copied to the host once."""
        n = len(sels)
        names = ([f"agree/net{i + 1}" for i in range(n)] + [f"kept/net{i + 1}" for i in range(n)]
                 + [f"loss/net{i + 1}" for i in range(n)])
        values = [torch.stack([a.float().mean() for a in agrees]), torch.stack([s.float().mean() for s in sels]),
                  torch.stack([v.detach().float() for v in losses])]
        return {"forget_rate": rate, **selection_host_values(names, values, sels, batch, self.num_classes)}

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the three networks' softmax (N, K, *S), or one network by `params.inference`."""
        mode = self.params.inference
        return mean_softmax(self.nets if mode == "mean" else [getattr(self, mode)], x)
