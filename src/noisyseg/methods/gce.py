"""`gce`: generalised cross-entropy (Zhang & Sabuncu, NeurIPS 2018), applied per pixel.

One network on the given labels ỹ with L_q(p, ỹ) = (1 − p_ỹ^q)/q, 0 < q ≤ 1, averaged over
the batch's pixels (q → 0: cross-entropy; q = 1: MAE/2), computed as −expm1(q·log p_ỹ)/q.

Batch: image (N, C, *S), label (N, *S) [, valid]. Parameters: `GCEParams` (q 0.7, dice true).
Logs: ``loss/gce``, ``loss/dice`` with Dice. Defaults and measurements: docs/methods/gce.md.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ..config import StrictModel
from .base import Method, StepInfo, StepOutput, host_logs
from .losses import one_hot, soft_dice_loss, weighted_mean, with_valid
from .registry import register


def gce_loss(logits: torch.Tensor, target: torch.Tensor, q: float) -> torch.Tensor:
    """Per-pixel generalised cross-entropy (1 − p_target^q)/q.

    Args:
        logits: (N, K, *S) scores (any float dtype; computed in float32).
        target: (N, *S) class indices.
        q: in (0, 1]; q → 0 tends to CE, q = 1 is 1 − p_target.

    Returns:
        (N, *S) float32, in [0, 1/q].
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    logp_t = torch.log_softmax(logits.float(), 1).gather(1, target.unsqueeze(1)).squeeze(1)
    return -torch.expm1(q * logp_t) / q


class GCEParams(StrictModel):
    """GCE hyper-parameters.

    Args:
        q: exponent of the Box-Cox transform, 0 < q ≤ 1 (0.7 as in the paper).
        dice: add soft Dice on all pixels against the given labels (off: the paper's loss alone,
            which never learns structures of a few percent of the pixels).
    """

    q: float = Field(0.7, gt=0.0, le=1.0)
    dice: bool = True


@register
class GCE(Method):
    """One network trained with generalised cross-entropy (+ optional soft Dice) on the given labels."""

    name = "gce"
    Params = GCEParams

    def __init__(self, params: GCEParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        label = batch["label"]
        logits = self.net(batch["image"]).float()
        valid = with_valid(None, batch.get("valid"))
        l_gce = weighted_mean(gce_loss(logits, label, self.params.q), valid)
        loss = l_gce
        terms = {"loss/gce": l_gce.detach()}
        if self.params.dice:
            l_dice = soft_dice_loss(torch.softmax(logits, 1), one_hot(label, self.num_classes), valid)
            loss = loss + l_dice
            terms["loss/dice"] = l_dice.detach()
        return StepOutput(loss, host_logs(terms))
