"""`clcs`: Collaborative Learning with Curriculum Selection (Guo et al., IEEE TMI 2025).

Two networks (same architecture, different initialisation) on the given labels ỹ
(docs/reference.md §1): probability voting p̄ = ½(p¹ + p²); per-class curriculum thresholds
T(c) = τ·β(c)/(2 − β(c)), β(c) = σ(c)/max σ, σ the EMA learning status of each class
(`learning_status`); clean pixels 1[p̄(ỹ) ≥ T(ỹ)] get CE, plus soft Dice (`dice_pixels`: over
all annotated pixels against ỹ by default); the others the
Noise Balance Loss w·[α·CE + β·RCE], w = sg(p̄(ỹ)); a discrepancy loss on the last decoder
features keeps the branches apart. L = L_clean + λ_dis·L_dis + λ_nbl·L_NBL after a warm-up of
CE + Dice on all pixels; inference averages both branches' softmax.

Batch: image (N, C, *S), label (N, *S) [, clean_label, valid]. Parameters: `CLCSParams`.
Capability: `label_thresholds()` = `thresholds()`, the current T (K,).
Logs: ``loss/clean``, ``loss/dis``, ``loss/nbl`` (``loss/warmup`` in warm-up),
``threshold/c{k}``, ``clean_frac/c{k}``; with ``clean_label`` ``selection/*`` (precision,
recall, base rate, per class). Design choices and measurements: docs/methods/clcs.md.
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
    class_counts,
    mean_softmax,
    selection_host_values,
)
from .losses import RCE_LOG_FLOOR, ce_dice_loss, one_hot, reverse_ce_from_p, soft_dice_loss, weighted_mean, \
    with_valid  # reverse_ce_from_p, RCE_LOG_FLOOR: re-exported
from .registry import register


# --------------------------------------------------------------------------- pure pieces


def curriculum_thresholds(sigma: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-class thresholds T(c) = τ·β(c)/(2 − β(c)), β(c) = σ(c)/max_c' σ(c').

    Args:
        sigma: (K,) non-negative confident-pixel counts (or shares) per class.
        tau: the confidence level τ in (0, 1].

    Returns:
        (K,) float32 thresholds in [0, τ]; the most confidently predicted class gets τ,
        and all thresholds are 0 when every count is 0 (warm start: all pixels count).
    """
    sigma = sigma.float().clamp_min(0)
    peak = sigma.max()
    beta = torch.where(peak > 0, sigma / peak.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(sigma))
    return tau * beta / (2.0 - beta)


def _pixel_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine along channels (N, *S) of two (N, F, *S) maps, in float32.

    Same value as `F.cosine_similarity` / `F.normalize` (norms clamped at eps, so an all-zero
    feature vector gives 0), written with channel sums because those are about 5x faster on
    CPU than the library's strided norm kernels (75 ms vs 14 ms forward+backward for
    8x16x128x128 on one thread).
    """
    a, b = a.float(), b.float()
    na = (a * a).sum(1).clamp_min(eps * eps)
    nb = (b * b).sum(1).clamp_min(eps * eps)
    return (a * b).sum(1) * torch.rsqrt(na) * torch.rsqrt(nb)


def one_sided_discrepancy(anchor: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """mean_i[1 + cos(sg(anchor_i), z_i)]: the cosine along channels, gradient to `z` only.

    Args:
        anchor: (N, F, *S) features treated as constant (stop-gradient).
        z: (N, F, *S) features that receive the gradient.

    Returns:
        scalar float32 in [0, 2] (a pixel whose features are all zero counts as orthogonal).
    """
    return 1.0 + _pixel_cosine(anchor.detach(), z).mean()


def discrepancy_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """L_dis = ½·mean_i[1 + cos(sg(z¹_i), z²_i)] + ½·mean_i[1 + cos(sg(z²_i), z¹_i)].

    Both one-sided terms have the same value c = mean_i cos(z¹_i, z²_i); the first sends
    ½·∂c/∂z² to z², the second ½·∂c/∂z¹ to z¹. So L_dis = 1 + ½·c + ½·sg(c) gives exactly the
    same value and gradients with one cosine map instead of two (tested against the sum of
    `one_sided_discrepancy` terms).

    Args:
        z1, z2: (N, F, *S) last decoder features of the two branches.

    Returns:
        scalar float32: 1 for orthogonal features, 2 for parallel ones (0 for opposite ones).
    """
    c = _pixel_cosine(z1, z2).mean()
    return 1.0 + 0.5 * c + 0.5 * c.detach()


def reverse_ce(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel reverse cross-entropy −Σ_k p_k·log(clamp(onehot(target)_k, 1e-4, 1)).

    Computed in closed form as −log(1e-4)·(1 − p_target), which equals the definition.

    Args:
        probs: (N, K, *S) probabilities.
        target: (N, *S) class indices.

    Returns:
        (N, *S) float32, in [0, −log 1e-4].
    """
    return reverse_ce_from_p(probs.float().gather(1, target.unsqueeze(1)).squeeze(1))


def clean_mask(mean_probs: torch.Tensor, label: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """clean_i = 1[p̄_i(ỹ_i) ≥ T(ỹ_i)].

    Args:
        mean_probs: (N, K, *S) voted probabilities p̄ (no gradient is needed).
        label: (N, *S) given class indices ỹ.
        thresholds: (K,) per-class thresholds T.

    Returns:
        (N, *S) bool.
    """
    p_given = mean_probs.detach().gather(1, label.unsqueeze(1)).squeeze(1)
    return p_given >= thresholds.to(p_given.dtype)[label]


def confident_shares(mean_probs: torch.Tensor, tau: float) -> torch.Tensor:
    """σ of one batch: share of pixels with max p̄ > τ and argmax p̄ = c, per class.

    Args:
        mean_probs: (N, K, *S) voted probabilities.

    Returns:
        (K,) float32 summing to at most 1.
    """
    p = mean_probs.detach().float()
    conf, pred = p.max(1)
    return class_counts(pred, p.shape[1], (conf > tau).float()) / conf.numel()


STATUS_FORMS = ("count", "predicted", "labelled", "confidence")


def learning_status(mean_probs: torch.Tensor, label: torch.Tensor, tau: float,
                    form: str, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's learning status σ(c) per class and whether the batch measures it.

    Forms (ŷ = argmax p̄, conf = max p̄):

    - ``count``: share of *all* pixels with conf > τ and ŷ = c (FlexMatch's count; a class
      covering 5 % of the image gets σ ≤ 0.05);
    - ``predicted``: share of the pixels predicted as c with conf > τ;
    - ``labelled``: share of the pixels labelled c that are predicted as c with conf > τ;
    - ``confidence``: mean conf of the pixels predicted as c.

    Args:
        mean_probs: (N, K, *S) voted probabilities.
        label: (N, *S) given class indices.
        tau: the confidence level τ.
        form: one of STATUS_FORMS.
        valid: (N, *S) bool, annotated pixels (``labelled`` counts only those).

    Returns:
        ((K,) float32 status in [0, 1], (K,) bool: the class was measured in this batch;
        ``count`` measures every class).
    """
    p = mean_probs.detach().float()
    k = p.shape[1]
    if form == "count":
        return confident_shares(p, tau), torch.ones(k, dtype=torch.bool, device=p.device)
    conf, pred = p.max(1)
    sure = (conf > tau).float()
    if form == "labelled":
        w = torch.ones_like(sure) if valid is None else valid.float()
        num = class_counts(label, k, w * sure * (pred == label).float())
        den = class_counts(label, k, w)
    else:
        num = class_counts(pred, k, conf if form == "confidence" else sure)
        den = class_counts(pred, k).float()
    present = den > 0
    return torch.where(present, num / den.clamp_min(1.0), torch.zeros_like(num)), present


# --------------------------------------------------------------------------- the method


class CLCSParams(StrictModel):
    """CLCS hyper-parameters.

    Args:
        tau: confidence level τ of the curriculum thresholds (the best-learnt class's threshold).
        ema_momentum: momentum of the EMA of the learning status σ.
        status: what σ(c) measures (see `learning_status`): 'predicted' (default: the
            confident share of the pixels predicted as c), 'count' (FlexMatch's literal
            count, a share of all pixels: the paper's lineage), 'labelled' or 'confidence'.
        lambda_dis: weight of the discrepancy loss.
        lambda_nbl: weight of the Noise Balance Loss.
        nbl_alpha: α, weight of CE inside the NBL.
        nbl_beta: β, weight of reverse CE inside the NBL.
        warmup_fraction: share of max_steps trained with plain CE + Dice on all pixels.
        dice_pixels: the soft Dice term of the clean loss: over 'all' annotated pixels against
            the given labels (default, 2D and 3D), over the 'clean' pixels only, or 'none'
            (CE alone). Measured:
            docs/measurements/clcs_defaults.md.
        inference: 'mean' of the two branches' softmax, or one branch alone.
    """

    tau: float = Field(0.95, gt=0.0, le=1.0)
    ema_momentum: float = Field(0.99, ge=0.0, lt=1.0)
    status: Literal[STATUS_FORMS] = "predicted"
    lambda_dis: float = Field(1.0, ge=0.0)
    lambda_nbl: float = Field(0.1, ge=0.0)
    nbl_alpha: float = Field(0.5, ge=0.0)
    nbl_beta: float = Field(0.5, ge=0.0)
    warmup_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    dice_pixels: Literal["all", "clean", "none"] = "all"
    inference: Literal["mean", "branch1", "branch2"] = "mean"


@register
class CLCS(Method):
    """Two networks with curriculum clean-pixel selection and a noise-balanced loss (see module doc).

    Buffers: ``sigma`` (K,), the EMA of confident-pixel shares per class (checkpointed).
    """

    name = "clcs"
    Params = CLCSParams
    relative_cost = 2.0
    figure_groups = ("threshold", "clean_frac", *SELECTION_FIGURE_GROUPS)

    def __init__(self, params: CLCSParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net1 = make_net()
        self.net2 = make_net()  # the torch RNG has advanced: a different initialisation
        self.register_buffer("sigma", torch.zeros(num_classes, dtype=torch.float32))

    # ------------------------------------------------------------------ helpers

    @property
    def dice_pixels(self) -> str:
        """The pixels of the clean loss's soft Dice term (`CLCSParams.dice_pixels`)."""
        return self.params.dice_pixels

    @property
    def use_dice(self) -> bool:
        """Whether the clean loss has a soft Dice term (`dice_pixels` other than 'none')."""
        return self.dice_pixels != "none"

    def warmup_steps(self, max_steps: int) -> int:
        return int(round(self.params.warmup_fraction * max_steps))

    def thresholds(self) -> torch.Tensor:
        """Current per-class thresholds (K,) from the EMA buffer."""
        return curriculum_thresholds(self.sigma, self.params.tau)

    @torch.no_grad()
    def _update_sigma(self, mean_probs: torch.Tensor, label: torch.Tensor,
                      valid: torch.Tensor | None = None) -> None:
        """EMA of the learning status of the classes this batch measures (the others keep theirs)."""
        m = self.params.ema_momentum
        value, present = learning_status(mean_probs, label, self.params.tau, self.params.status, valid)
        self.sigma.copy_(torch.where(present, m * self.sigma + (1.0 - m) * value, self.sigma))

    # ------------------------------------------------------------------ training

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        p = self.params
        x, label = batch["image"], batch["label"]
        k = self.num_classes
        z1, logits1 = self.net1.forward_with_features(x)
        z2, logits2 = self.net2.forward_with_features(x)
        logits1, logits2 = logits1.float(), logits2.float()
        # one log-softmax per branch serves CE, RCE (through p_ỹ) and, detached, the vote
        logp1, logp2 = torch.log_softmax(logits1, 1), torch.log_softmax(logits2, 1)
        with torch.no_grad():
            mean_probs = 0.5 * (logp1.exp() + logp2.exp())

        thr = self.thresholds()  # from σ before this batch
        clean = clean_mask(mean_probs, label, thr)
        valid = batch.get("valid")  # unannotated pixels: neither clean nor noisy
        if valid is not None:
            clean = clean & valid
        self._update_sigma(mean_probs, label, valid)
        warm = info.step < self.warmup_steps(info.max_steps)

        if warm:
            loss = ce_dice_loss(logits1, label, valid) + ce_dice_loss(logits2, label, valid)
            with torch.no_grad():
                l_dis = discrepancy_loss(z1, z2)
            terms = {"loss/warmup": loss.detach(), "loss/dis": l_dis}
        else:
            cleanf = clean.float()
            lab = label.unsqueeze(1)
            noisy_w = (1.0 - cleanf) * mean_probs.gather(1, lab).squeeze(1)
            if valid is not None:
                noisy_w = noisy_w * valid
            target = one_hot(label, k) if self.use_dice else None
            l_clean = x.new_zeros((), dtype=torch.float32)
            l_nbl = x.new_zeros((), dtype=torch.float32)
            dice_w = cleanf if self.dice_pixels == "clean" else (None if valid is None else valid.float())
            for logp in (logp1, logp2):
                logp_t = logp.gather(1, lab).squeeze(1)
                ce = -logp_t
                l_clean = l_clean + weighted_mean(ce, cleanf)
                if self.use_dice:
                    l_clean = l_clean + soft_dice_loss(logp.exp(), target, dice_w)
                if p.lambda_nbl > 0:
                    nbl = p.nbl_alpha * ce + p.nbl_beta * reverse_ce_from_p(logp_t.exp())
                    l_nbl = l_nbl + (noisy_w * nbl).sum() / noisy_w.numel()
            l_dis = discrepancy_loss(z1, z2)
            loss = l_clean + p.lambda_dis * l_dis + p.lambda_nbl * l_nbl
            terms = {"loss/clean": l_clean.detach(), "loss/dis": l_dis.detach(), "loss/nbl": l_nbl.detach()}
        return StepOutput(loss, self._logs(thr, clean, label, batch, terms))

    @torch.no_grad()
    def _logs(self, thr: torch.Tensor, clean: torch.Tensor, label: torch.Tensor, batch, terms: dict) -> dict:
        """Every scalar of the step in one tensor, copied to the host once."""
        k = self.num_classes
        per_class = class_counts(label, k, with_valid(None, batch.get("valid"))).float()
        clean_per_class = class_counts(label, k, clean.float())
        names = [f"threshold/c{c}" for c in range(k)] + [f"clean_frac/c{c}" for c in range(k)] + list(terms)
        values = [thr.float(), clean_per_class / per_class, torch.stack([v.float() for v in terms.values()])]
        return selection_host_values(names, values, [clean], batch, self.num_classes)  # 0/0 → NaN (undefined)

    # ------------------------------------------------------------------ inference

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the two branches' softmax (N, K, *S), or one branch by `params.inference`."""
        mode = self.params.inference
        nets = {"mean": [self.net1, self.net2], "branch1": [self.net1], "branch2": [self.net2]}[mode]
        return mean_softmax(nets, x)
