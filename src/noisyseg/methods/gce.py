"""`gce`: generalised cross-entropy (Zhang & Sabuncu, "Generalized Cross Entropy Loss for
Training Deep Neural Networks with Noisy Labels", NeurIPS 2018), applied per pixel.

One network trained on the given, possibly noisy, labels ỹ with the negative Box-Cox
transform of the given class's probability:

    L_q(p, ỹ) = (1 − p_ỹ^q) / q,   0 < q ≤ 1,

averaged over all pixels of the batch. q → 0 gives cross-entropy −log p_ỹ (fast to fit,
not robust); q = 1 gives 1 − p_ỹ, i.e. MAE/2 on the one-hot target (robust to symmetric
noise, slow to fit). Its gradient is p_ỹ^q times the CE gradient, so confidently wrong
pixels (small p_ỹ) pull less than under CE.

Defaults and decisions (each a [choice]):

* q = 0.7, the paper's value for all its experiments. Params reject q outside (0, 1].
* The loss is computed as −expm1(q·log p_ỹ)/q from the log-softmax: the same value, but
  accurate for small q (tends to CE) and for p_ỹ near 0 or 1, with no clamp.
* `dice: false` by default: the baseline is the published loss alone. Soft Dice over all
  pixels is not noise-robust (it fits every given label, and its gradient per pixel grows
  as the class volume shrinks), so adding it mixes a non-robust term into the comparison
  this baseline is for. `dice: true` adds the plain soft Dice of `supervised`. Measured
  (2D, 150 steps, seeds 0/1/2; the two tasks of methods/coteaching.py's module doc): on the
  eroded-ellipse task GCE 0.698/0.752/0.607, GCE + Dice 0.717/0.794/0.627, supervised
  0.714/0.767/0.603 (GCE does not help against this systematic noise); on the
  small-structure task GCE 0.925/0.905/0.940, GCE + Dice 0.821/0.919/0.862, supervised
  0.870/0.929/0.904: Dice helped a little on large structures and hurt twice by 0.08-0.10
  on small ones, so it stays off.
* AMP: the network runs under autocast; logits are cast to float32 before any loss.

Logs per step: ``loss/gce`` (mean L_q) and, with Dice, ``loss/dice``; one host copy.
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
        dice: add soft Dice on all pixels (off: the baseline is the robust loss alone).
    """

    q: float = Field(0.7, gt=0.0, le=1.0)
    dice: bool = False


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
