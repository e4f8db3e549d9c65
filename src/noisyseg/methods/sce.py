"""`sce`: symmetric cross-entropy (Wang et al., ICCV 2019), applied per pixel.

One network on the given labels ỹ with L = α·CE + β·RCE, averaged over the batch's pixels:
CE = −log p_ỹ, RCE = −Σ_k p_k·log clamp(onehot(ỹ)_k, 1e-4, 1) = −log(1e-4)·(1 − p_ỹ)
(`losses.reverse_ce_from_p`, shared with CLCS's Noise Balance Loss).

Batch: image (N, C, *S), label (N, *S) [, valid]. Parameters: `SCEParams` (alpha 1, beta 1,
dice false).
Logs: ``loss/ce``, ``loss/rce`` (unweighted means), ``loss/dice`` with Dice.
Defaults and measurements: docs/methods/sce.md.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from ..config import StrictModel
from .base import Method, StepInfo, StepOutput, host_logs
from .losses import one_hot, reverse_ce_from_p, soft_dice_loss, weighted_mean, with_valid
from .registry import register


def sce_terms(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel CE and RCE maps, each (N, *S) float32, from one log-softmax.

    Args:
        logits: (N, K, *S) scores (any float dtype).
        target: (N, *S) class indices.
    """
    logp_t = torch.log_softmax(logits.float(), 1).gather(1, target.unsqueeze(1)).squeeze(1)
    return -logp_t, reverse_ce_from_p(logp_t.exp())


def sce_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Per-pixel symmetric cross-entropy α·CE + β·(−log 1e-4)·(1 − p_target), (N, *S) float32."""
    ce, rce = sce_terms(logits, target)
    return alpha * ce + beta * rce


class SCEParams(StrictModel):
    """SCE hyper-parameters.

    Args:
        alpha: α, weight of cross-entropy.
        beta: β, weight of reverse cross-entropy (A = log 1e-4).
        dice: add soft Dice on all pixels (off: the baseline is the robust loss alone).
    """

    alpha: float = Field(1.0, ge=0.0)
    beta: float = Field(1.0, ge=0.0)
    dice: bool = False

    @model_validator(mode="after")
    def _some_loss(self) -> SCEParams:
        if self.alpha == 0.0 and self.beta == 0.0 and not self.dice:
            raise ValueError("alpha and beta are both 0 and dice is off: there is no loss to train")
        return self


@register
class SCE(Method):
    """One network trained with symmetric cross-entropy (+ optional soft Dice) on the given labels."""

    name = "sce"
    Params = SCEParams

    def __init__(self, params: SCEParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        p = self.params
        label = batch["label"]
        logits = self.net(batch["image"]).float()
        ce, rce = sce_terms(logits, label)
        valid = with_valid(None, batch.get("valid"))
        l_ce, l_rce = weighted_mean(ce, valid), weighted_mean(rce, valid)
        loss = p.alpha * l_ce + p.beta * l_rce
        terms = {"loss/ce": l_ce.detach(), "loss/rce": l_rce.detach()}
        if p.dice:
            l_dice = soft_dice_loss(torch.softmax(logits, 1), one_hot(label, self.num_classes), valid)
            loss = loss + l_dice
            terms["loss/dice"] = l_dice.detach()
        return StepOutput(loss, host_logs(terms))
