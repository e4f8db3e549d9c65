"""`l2b`: Learning to Bootstrap (Zhou, Wang, Yuille, Sun, Zhou, arXiv 2202.04291, 2023).

One network and a trusted meta batch (`needs_trusted`): per pixel, the weight α of the
given-label loss ℓʳ = CE(p, ỹ) and β of the bootstrap loss ℓᵖ = CE(p, ŷ), ŷ = argmax of the
detached prediction, from the exact one-step look-ahead of meta_weights.py
(α, β = max(η⟨∇θ ℓ_i, ∇θ L_meta⟩, 0)/Z, Σα + Σβ = 1). Loss L = Σ α ℓʳ + Σ β ℓᵖ
(+ λ_D·Dice(p, t), t = (αỹ + βŷ)/(α + β), off by default). MetaDCSeg's first stage without
the Dynamic Center Distance.

Batch: image (N, C, *S), label (N, *S), meta_image (M, C, *S), meta_label (M, *S)
[, clean_label, valid, meta_valid]; a batch without the meta pair is a ConfigError.
Parameters: `L2BParams`. AMP is declined.
Stage 0 (`meta_start`, shared with `metadcseg`): CE (+ Dice) on the given labels until the
network finds every class; logs ``loss/warmup``, ``meta/agreement``, ``meta/stage``.
Logs: ``meta/alpha_mean``, ``meta/beta_mean``, ``meta/uniform_fallback``, ``meta_loss``,
``loss/weighted_ce``, ``loss/dice``; with ``clean_label`` ``meta/wrong_label_rate``,
``meta/wrong_label_weight_share``, ``meta/wrong_pseudo_weight_share``,
``meta/wrong_target_weight``. Design choices and cost: docs/methods/l2b.md.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError
from .base import Method, StepInfo, StepOutput, host_logs
from .meta_warmup import MetaWarmup
from .meta_weights import (
    MetaWeights,
    meta_dice_loss,
    weighted_bootstrap_loss,
    weights_for_step,
    wrong_label_logs,
)
from .registry import register


class L2BParams(StrictModel):
    """L2B hyper-parameters.

    Args:
        lookahead_lr: η of the one-step look-ahead (scales the raw weights only).
        pseudo_label: source of ŷ: 'prediction' (argmax of the network's prediction, L2B) or
            'flip_average' (argmax of the softmax averaged over flips along each spatial axis,
            1 + dims extra forward passes).
        weight_norm_stats: batch-norm statistics in the meta and jvp passes: 'batch' (training
            mode, the function a training step differentiates) or 'running' (eval mode).
        dice_weight: [choice] λ_D of a Dice term (0: L2B's loss alone); 1 by default, as in
            `metadcseg` (measured in docs/methods/l2b.md).
        dice_target: what that Dice term compares with: 'soft' (the soft target t over the
            pixels with α + β > 0) or 'given' (the given labels over every annotated pixel);
            see `meta_weights.meta_dice_loss`.
        meta_start: [choice] the meta weights start once the running agreement of the
            network's predictions with the given labels reaches this value (`MetaWarmup`,
            shared with `metadcseg`); before, a step is CE (+ λ_D·Dice) on the given labels
            (stage 0). 0: meta weights from the first step (L2B).
    """

    lookahead_lr: float = Field(1e-3, gt=0)
    pseudo_label: Literal["prediction", "flip_average"] = "prediction"
    weight_norm_stats: Literal["batch", "running"] = "batch"
    dice_weight: float = Field(1.0, ge=0.0)
    dice_target: Literal["given", "soft"] = "soft"
    meta_start: float = Field(0.3, ge=0.0, le=1.0)


@register
class L2B(Method):
    """Per-pixel meta-learned weights of given vs pseudo labels (no DCD). See the module docstring."""

    name = "l2b"
    figure_groups = ("meta",)
    Params = L2BParams
    relative_cost = 2.5
    needs_trusted = True
    supports_amp = False
    ddp_compatible = False  # the look-ahead's torch.autograd.grad (see engine/distributed.py)

    def __init__(self, params: L2BParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()
        self.warmup = MetaWarmup(params.meta_start)

    def compute_weights(self, image: torch.Tensor, label: torch.Tensor, meta_image: torch.Tensor,
                        meta_label: torch.Tensor, valid: torch.Tensor | None = None,
                        meta_valid: torch.Tensor | None = None) -> MetaWeights:
        """MetaWeights (α, β, ŷ, ...) of a training batch against a meta batch (meta_weights.py)."""
        p = self.params
        return weights_for_step(self.net, image, label, meta_image, meta_label, lr=p.lookahead_lr,
                                norm_stats=p.weight_norm_stats, flip_average=p.pseudo_label == "flip_average",
                                valid=valid, meta_valid=meta_valid)

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        if "meta_image" not in batch or "meta_label" not in batch:
            raise ConfigError("method 'l2b' needs a trusted meta batch (batch['meta_image'], batch['meta_label']): "
                              "give --clean-cases FILE or a 'clean_cases' list in dataset.json")
        p = self.params
        if self.warmup.active:
            return self.warmup.step(self.net, batch, self.num_classes, dice_weight=p.dice_weight)
        image, label = batch["image"], batch["label"]
        mw = self.compute_weights(image, label, batch["meta_image"], batch["meta_label"], batch.get("valid"),
                                  batch.get("meta_valid"))
        logits = self.net(image).float()  # the training forward (updates BN running statistics)
        weighted = weighted_bootstrap_loss(logits, label, mw.pseudo_label, mw.alpha, mw.beta)
        if p.dice_weight > 0:
            dice = meta_dice_loss(torch.softmax(logits, 1), label, mw.pseudo_label, mw.alpha, mw.beta,
                                  p.dice_target, batch.get("valid"))
        else:
            dice = torch.zeros((), device=logits.device)
        loss = weighted + p.dice_weight * dice
        return StepOutput(loss, self._logs(mw, label, batch, weighted, dice))

    @torch.no_grad()
    def _logs(self, mw: MetaWeights, label: torch.Tensor, batch, weighted: torch.Tensor,
              dice: torch.Tensor) -> dict[str, float]:
        """The step's scalars in one tensor, copied to the host once (0/0 → NaN)."""
        a, b = mw.alpha, mw.beta
        names = ["meta/alpha_mean", "meta/beta_mean", "loss/weighted_ce", "loss/dice"]
        values = [a.sum(), b.sum(), weighted.detach(), dice.detach()]
        terms = dict(zip(names, values))
        if "clean_label" in batch:
            clean = batch["clean_label"]
            terms.update(wrong_label_logs(a, label, clean))
            a_wrong = (a * (label != clean)).sum()
            b_wrong = (b * (mw.pseudo_label != clean)).sum()
            terms["meta/wrong_pseudo_weight_share"] = b_wrong / b.sum()
            terms["meta/wrong_target_weight"] = a_wrong + b_wrong
        terms.update({"meta/uniform_fallback": mw.uniform, "meta_loss": mw.meta_loss})
        return host_logs(terms)
