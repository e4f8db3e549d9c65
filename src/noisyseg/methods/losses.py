"""Losses shared by the methods: masked/weighted cross-entropy and soft Dice.

Batches whose patches hold unannotated pixels carry ``batch["valid"]`` (N, *S) bool (see
`PatchSampler.batch`); every label-dependent term is weighted by it (`with_valid`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RCE_LOG_FLOOR = 1e-4  # clamp of the one-hot target inside reverse CE's log


def one_hot(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, *S) long → (N, K, *S) float."""
    return F.one_hot(label, num_classes).movedim(-1, 1).to(torch.float32)


def pixel_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy (N, *S) of logits (N, K, *S) against class indices (N, *S)."""
    return F.cross_entropy(logits.float(), target, reduction="none")


def with_valid(weight: torch.Tensor | None, valid: torch.Tensor | None) -> torch.Tensor | None:
    """A per-pixel weight (N, *S) restricted to the annotated pixels `valid` (either may be None)."""
    if valid is None:
        return weight
    return valid.float() if weight is None else weight * valid


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Σ w·v / Σ w (plain mean when weight is None; 0 when all weights are 0)."""
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1e-8)


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                   include_background: bool = False, eps: float = 1e-5) -> torch.Tensor:
    """1 − mean soft Dice over classes.

    Args:
        probs: (N, K, *S) probabilities.
        target: (N, K, *S) one-hot or soft targets.
        weight: optional (N, *S) per-pixel weight (e.g. a clean mask).
    """
    probs = probs.float()
    dims = (0,) + tuple(range(2, probs.ndim))
    if weight is not None:
        w = weight.unsqueeze(1).float()
        probs, target = probs * w, target * w
    inter = (probs * target).sum(dims)
    denom = probs.sum(dims) + target.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    if not include_background:
        dice = dice[1:]
    return 1.0 - dice.mean()


def ce_dice_loss(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None,
                 dice_weight: float = 1.0) -> torch.Tensor:
    """CE + `dice_weight`·soft Dice (the `supervised` loss), optionally restricted by a per-pixel
    weight (N, *S); the Dice term is not computed when `dice_weight` is 0."""
    k = logits.shape[1]
    ce = weighted_mean(pixel_ce(logits, label), weight)
    if dice_weight == 0:
        return ce
    return ce + dice_weight * soft_dice_loss(torch.softmax(logits.float(), 1), one_hot(label, k), weight)


def reverse_ce_from_p(p_target: torch.Tensor) -> torch.Tensor:
    """Reverse cross-entropy −Σ_k p_k·log(clamp(onehot(ỹ)_k, 1e-4, 1)) in closed form,
    −log(1e-4)·(1 − p_ỹ), from the probability of the given class p_target (N, *S)."""
    return -math.log(RCE_LOG_FLOOR) * (1.0 - p_target)
