"""`l2b`: Learning to Bootstrap (Zhou, Wang, Yuille, Sun, Zhou, arXiv 2202.04291, 2023).

L2B learns, by meta-learning on a small clean set, how much each training sample (here: each
pixel) should trust its given label ỹ versus the network's own prediction ŷ. One network and a
small trusted set (`needs_trusted`). Each step, on a training batch and a clean meta batch:

1. Per-pixel losses ℓʳ_i = CE(p_i, ỹ_i) (given label) and ℓᵖ_i = CE(p_i, ŷ_i), ŷ = argmax of the
   detached prediction (the "bootstrap" target).
2. Meta weights from a one-step look-ahead θ'(ε) = θ − η∇θ Σ_i(εʳ_i ℓʳ_i + εᵖ_i ℓᵖ_i) and the
   clean-set loss L_meta(θ'): w̃ = −∂L_meta/∂ε at ε = 0 = η⟨∇θ ℓ_i, ∇θ L_meta⟩;
   α_i, β_i = max(w̃ʳ_i, 0)/Z, max(w̃ᵖ_i, 0)/Z, Z = Σ over both maps and the batch (Σα + Σβ = 1).
3. Loss L = Σ_i α_i ℓʳ_i + Σ_i β_i ℓᵖ_i (+ λ_D·Dice(p, t) with t = (αỹ + βŷ)/(α + β), off by
   default).

This is MetaDCSeg's first stage without the Dynamic Center Distance: no feature centers, no
γ refocusing, no stages. Steps 1-2 are the shared `meta_weights.meta_pixel_weights` (exact
look-ahead by one meta backward and one forward-mode jvp, no `higher`); the loss
(`weighted_bootstrap_loss`), the optional Dice term's `soft_target` and `pseudo_label:
flip_average` are the pieces of meta_weights.py that MetaDCSeg uses too.

Defaults: lookahead_lr 1e-3 (η only scales the raw weights; it cancels in α, β), pseudo-label
from the plain prediction [paper], meta loss = mean pixel CE on the meta batch [paper],
batch-norm batch statistics in the look-ahead [lineage: L2B's `higher` code runs the model in
training mode], dice_weight 0 [paper: L2B's loss is the reweighted CE].

Decisions (each a [choice]; see meta_weights.py for the look-ahead's own):

* When every raw weight is ≤ 0 (Z = 0), `meta_pixel_weights` falls back to uniform weights
  1/(2M) on both maps (L2B would train on nothing that step).
* The loss is the weighted *sum* (the weights already sum to 1), so its scale matches a mean
  CE; the Dice term, when on, counts only pixels with α + β > 0 (the soft target is undefined
  elsewhere), as in MetaDCSeg.
* The loop's AMP is declined (`supports_amp = False`), as for MetaDCSeg: the meta passes run
  in float32 regardless, and declining keeps the two meta-weighting methods' cost and numerics
  comparable.
* A batch without ``meta_image``/``meta_label`` raises a ConfigError naming the fix (the loop
  supplies them for `needs_trusted` methods when the dataset has trusted cases).

Logs per step: ``meta/alpha_mean``, ``meta/beta_mean`` (α, β in units of 1/M, summing to 1),
``meta/uniform_fallback``, ``meta_loss``, ``loss/weighted_ce``, ``loss/dice``, and with
``clean_label``: ``meta/wrong_label_rate``, ``meta/wrong_label_weight_share`` (Σ_wrong α / Σα,
the share of the given-label weight on pixels whose given label is wrong),
``meta/wrong_pseudo_weight_share`` (Σ β on wrong pseudo-labels / Σβ) and
``meta/wrong_target_weight`` (Σ_{ỹ≠y} α + Σ_{ŷ≠y} β: the share of all weight on a wrong target).
The step's own logs are copied to the host once (`meta_pixel_weights` itself syncs twice:
its fallback test and the meta loss value; three syncs per step, counted on an H200, where a
2D step of 8×160² took 13.4 ms in float32 vs 5.3 ms for `supervised` with AMP, and a 3D step
of 2×64³ 14.9 vs 5.2 ms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError
from .base import Method, StepInfo, StepOutput, host_logs
from .losses import soft_dice_loss
from .meta_weights import (
    MetaWeights,
    soft_target,
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
        dice_weight: λ_D of a soft-target Dice term (0: L2B's loss alone).
    """

    lookahead_lr: float = Field(1e-3, gt=0)
    pseudo_label: Literal["prediction", "flip_average"] = "prediction"
    weight_norm_stats: Literal["batch", "running"] = "batch"
    dice_weight: float = Field(0.0, ge=0.0)


@register
class L2B(Method):
    """Per-pixel meta-learned weights of given vs pseudo labels (no DCD). See the module docstring."""

    name = "l2b"
    Params = L2BParams
    needs_trusted = True
    supports_amp = False
    ddp_compatible = False  # the look-ahead's torch.autograd.grad (see engine/distributed.py)

    def __init__(self, params: L2BParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()

    def compute_weights(self, image: torch.Tensor, label: torch.Tensor, meta_image: torch.Tensor,
                        meta_label: torch.Tensor) -> MetaWeights:
        """MetaWeights (α, β, ŷ, ...) of a training batch against a meta batch (meta_weights.py)."""
        p = self.params
        return weights_for_step(self.net, image, label, meta_image, meta_label, lr=p.lookahead_lr,
                                norm_stats=p.weight_norm_stats, flip_average=p.pseudo_label == "flip_average")

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        if "meta_image" not in batch or "meta_label" not in batch:
            raise ConfigError("method 'l2b' needs a trusted meta batch (batch['meta_image'], batch['meta_label']): "
                              "give --clean-cases FILE or a 'clean_cases' list in dataset.json")
        p = self.params
        image, label = batch["image"], batch["label"]
        mw = self.compute_weights(image, label, batch["meta_image"], batch["meta_label"])
        logits = self.net(image).float()  # the training forward (updates BN running statistics)
        weighted = weighted_bootstrap_loss(logits, label, mw.pseudo_label, mw.alpha, mw.beta)
        if p.dice_weight > 0:
            target, mask = soft_target(label, mw.pseudo_label, mw.alpha, mw.beta, self.num_classes)
            dice = soft_dice_loss(torch.softmax(logits, 1), target, weight=mask)
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

    def write_figures(self, run_dir: Path, cases, device: torch.device) -> None:
        """`l2b_curves.png`: the meta/ scalars over training."""
        log_csv = Path(run_dir).parent / "train_log.csv"
        if not log_csv.is_file():
            return
        from ..report.figures import plot_training_curves

        plot_training_curves(log_csv, Path(run_dir) / "l2b_curves.png", groups=["meta"])
