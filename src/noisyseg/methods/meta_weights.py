"""Per-pixel meta weights from a one-step look-ahead on a clean batch (L2B / MetaDCSeg).

For the per-pixel losses ℓʳ (given label) and ℓᵖ (pseudo label) of a training batch and a
meta loss L_meta on a clean batch, the raw weight of each term is
w̃_i = η·⟨∇θ ℓ_i(θ), ∇θ L_meta(θ)⟩ (the derivative of the look-ahead's meta loss at ε = 0),
computed exactly by one meta forward/backward for g = ∇θ L_meta and one forward-mode pass
(the jvp of θ ↦ (ℓʳ, ℓᵖ) along g): no second-order autograd, no `higher`.
α_i = max(w̃ʳ_i, 0)/Z, β_i = max(w̃ᵖ_i, 0)/Z, Z over both maps and the batch (Σα + Σβ = 1);
uniform 1/(2M) when Z = 0. Batch-norm running statistics are never updated here
(`frozen_norm_stats`); the passes run in float32.

Main entry: `weights_for_step(net, image (N, C, *S), label (N, *S), meta_image, meta_label,
*, lr, ...) -> MetaWeights` (alpha, beta, pseudo_label (N, *S), ...).
Design notes (batch norm, mixed precision): docs/methods/metadcseg.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.autograd import forward_ad as fwAD
from torch.func import functional_call

from .losses import one_hot, pixel_ce, soft_dice_loss, weighted_mean
from .shared import flip_averaged_probs, frozen_norm_stats

PixelLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits (N, K, *S), target (N, *S) long) → per-pixel loss (N, *S)."""


@dataclass
class MetaWeights:
    """Result of `meta_pixel_weights`.

    Attributes:
        alpha: (N, *S) weight of the given-label loss ℓʳ, ≥ 0.
        beta: (N, *S) weight of the pseudo-label loss ℓᵖ, ≥ 0; Σα + Σβ = 1.
        raw_real: (N, *S) w̃ʳ = η⟨∇θ ℓʳ_i, ∇θ L_meta⟩ (may be negative).
        raw_pseudo: (N, *S) w̃ᵖ likewise for ℓᵖ.
        pseudo_label: (N, *S) long, the ŷ the weights refer to.
        meta_loss: L_meta(θ) on the meta batch, a 0-dim tensor.
        uniform: 0-dim bool tensor, true when every raw weight was ≤ 0 and the uniform
            fallback was used.
    Both stay on the device, so a step can copy them to the host with its other logs.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    raw_real: torch.Tensor
    raw_pseudo: torch.Tensor
    pseudo_label: torch.Tensor
    meta_loss: torch.Tensor
    uniform: torch.Tensor


def _trainable(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p for k, p in net.named_parameters() if p.requires_grad}


def ce_meta_loss(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Default meta loss: mean pixel cross-entropy (L2B's). logits (N, K, *S), label (N, *S),
    optional per-pixel weight (N, *S) (the annotated pixels)."""
    return weighted_mean(pixel_ce(logits, label), weight)


def balanced_ce_meta_loss(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None
                          ) -> torch.Tensor:
    """Class-balanced meta loss: the mean over the classes present in `label` of each class's
    mean pixel cross-entropy, so a structure of 1 % of the pixels has a class's say, not 1 %.
    logits (N, K, *S), label (N, *S), optional per-pixel weight (N, *S) (the annotated pixels)."""
    ce = pixel_ce(logits, label)
    w = torch.ones_like(ce) if weight is None else weight.to(ce.dtype)
    oh = one_hot(label, logits.shape[1]).to(ce.dtype) * w.unsqueeze(1)
    dims = (0,) + tuple(range(2, oh.ndim))
    mass = oh.sum(dims)
    per_class = (oh * ce.unsqueeze(1)).sum(dims) / mass.clamp_min(1e-8)
    present = (mass > 0).to(ce.dtype)
    return (per_class * present).sum() / present.sum().clamp_min(1.0)


def renormalise(mw: MetaWeights, valid: torch.Tensor | None = None, groups: torch.Tensor | None = None,
                num_groups: int = 0) -> MetaWeights:
    """α, β from the raw weights, normalised over the annotated pixels and, with `groups`, per group.

    Args:
        mw: weights whose `raw_real` / `raw_pseudo` (N, *S) are used.
        valid: optional (N, *S) bool, the annotated pixels: the others get α = β = 0.
        groups: optional (N, *S) long in 0..num_groups−1 (e.g. the given label). Each group g
            with n_g valid pixels keeps the weight n_g / n that uniform weights would give it,
            shared among its pixels in proportion to max(w̃, 0) (uniformly when none is
            positive), so the weighting moves weight within a class, never between classes.
        num_groups: the number of groups.
    Returns:
        MetaWeights with the new alpha, beta (Σα + Σβ = 1 over the valid pixels) and `uniform`
        (true when some group, or the whole batch without groups, fell back to uniform).
    """
    if groups is None:
        alpha, beta, uniform = normalise_weights(mw.raw_real, mw.raw_pseudo, valid)
        return dataclasses.replace(mw, alpha=alpha, beta=beta, uniform=uniform)
    v = torch.ones_like(mw.raw_real) if valid is None else valid.to(mw.raw_real.dtype)
    a, b = mw.raw_real.clamp_min(0) * v, mw.raw_pseudo.clamp_min(0) * v
    n = v.sum().clamp_min(1.0)
    oh = one_hot(groups, num_groups).to(a.dtype) * v.unsqueeze(1)
    dims = (0,) + tuple(range(2, oh.ndim))
    n_g = oh.sum(dims)
    z_g = (oh * (a + b).unsqueeze(1)).sum(dims)
    fallback = (z_g <= 0) & (n_g > 0)
    scale = torch.where(fallback, torch.zeros_like(z_g), (n_g / n) / z_g.clamp_min(torch.finfo(a.dtype).tiny))
    per_pixel = torch.einsum("ng...,g->n...", oh, scale)
    u = 0.5 * torch.einsum("ng...,g->n...", oh, fallback.to(a.dtype)) / n
    return dataclasses.replace(mw, alpha=a * per_pixel + u, beta=b * per_pixel + u, uniform=fallback.any())


def meta_gradient(net: nn.Module, meta_image: torch.Tensor, meta_label: torch.Tensor,
                  meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ce_meta_loss,
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """g = ∇θ L_meta(θ) over the trainable parameters, detached, and L_meta's value.

    Args:
        net: the network (logits = net(x)); its mode decides batch vs running statistics.
        meta_image: (N, C, *S) clean batch.
        meta_label: (N, *S) long, its trusted labels.
        meta_loss: (logits, label) → scalar.
    Returns:
        ({parameter name: gradient}, detached 0-dim loss). Parameters the loss does not reach get 0.
        Parameters' `.grad` fields and batch-norm buffers are left untouched.
    """
    params = _trainable(net)
    with frozen_norm_stats(net), torch.enable_grad(), torch.autocast(meta_image.device.type, enabled=False):
        loss = meta_loss(net(meta_image), meta_label)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    g = {k: (torch.zeros_like(p) if gr is None else gr.detach()) for (k, p), gr in zip(params.items(), grads)}
    return g, loss.detach()


def pixel_loss_directional(net: nn.Module, image: torch.Tensor, label: torch.Tensor,
                           tangent: dict[str, torch.Tensor], pseudo_label: torch.Tensor | None = None,
                           pixel_loss: PixelLoss = pixel_ce,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """⟨∇θ ℓʳ_i, v⟩ and ⟨∇θ ℓᵖ_i, v⟩ for every pixel i in one forward-mode pass.

    The jvp of θ ↦ (ℓʳ(θ), ℓᵖ(θ)) along the tangent v: the network is called through
    `functional_call` with dual parameters (primal θ detached, tangent v) at one
    `torch.autograd.forward_ad` level, with no autograd graph recorded. This is the
    computation `torch.func.jvp` performs, without functorch's per-op wrapping, which costs
    about a quarter of a training step on CPU (benchmarks/bench_metadcseg.py).

    Args:
        net: the network; its mode decides batch vs running statistics; running
            statistics are not updated.
        image: (N, C, *S) training batch.
        label: (N, *S) long, the given labels ỹ.
        tangent: {name: tensor} for every trainable parameter (e.g. from `meta_gradient`).
        pseudo_label: (N, *S) long ŷ, or None for the argmax of this very forward pass.
        pixel_loss: per-pixel loss (logits, target) → (N, *S).
    Returns:
        (dot_real (N, *S), dot_pseudo (N, *S), pseudo_label (N, *S) long).
    """
    params = _trainable(net)
    with frozen_norm_stats(net), torch.no_grad(), torch.autocast(image.device.type, enabled=False), \
            fwAD.dual_level():
        duals = {k: fwAD.make_dual(p.detach(), tangent[k].to(p.dtype)) for k, p in params.items()}
        logits = functional_call(net, duals, (image,), strict=False)
        # (argmax(1) is ~15x slower than max(1) on CPU)
        yhat = fwAD.unpack_dual(logits).primal.max(1).indices if pseudo_label is None else pseudo_label
        dot_r = fwAD.unpack_dual(pixel_loss(logits, label)).tangent
        dot_p = fwAD.unpack_dual(pixel_loss(logits, yhat)).tangent
    return dot_r, dot_p, yhat


def normalise_weights(raw_real: torch.Tensor, raw_pseudo: torch.Tensor, valid: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """α, β = max(w̃, 0) / Z with Z the sum of both clipped maps over the batch.

    Args:
        raw_real, raw_pseudo: (N, *S) raw weights.
        valid: optional (N, *S) bool, the annotated pixels: the others get α = β = 0.
    Returns:
        (alpha, beta, uniform): (N, *S) each, non-negative, Σα + Σβ = 1. When Z = 0 both are
        1/(2M) on each of the M (valid) pixels and `uniform` (a 0-dim bool tensor) is true.
        No host sync: the branch is a `torch.where`.
    """
    a, b = raw_real.clamp_min(0), raw_pseudo.clamp_min(0)
    if valid is None:
        u = 0.5 / a.numel()
    else:
        v = valid.to(a.dtype)
        a, b = a * v, b * v
        u = 0.5 * v / v.sum().clamp_min(1.0)
    z = a.sum() + b.sum()
    uniform = z <= 0
    return torch.where(uniform, u, a / z), torch.where(uniform, u, b / z), uniform


def _weights(raw_r: torch.Tensor, raw_p: torch.Tensor, yhat: torch.Tensor, lmeta: torch.Tensor) -> MetaWeights:
    alpha, beta, uniform = normalise_weights(raw_r, raw_p)
    return MetaWeights(alpha, beta, raw_r, raw_p, yhat, lmeta, uniform)


def meta_pixel_weights(net: nn.Module, image: torch.Tensor, label: torch.Tensor, meta_image: torch.Tensor,
                       meta_label: torch.Tensor, *, lr: float, pseudo_label: torch.Tensor | None = None,
                       pixel_loss: PixelLoss = pixel_ce,
                       meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ce_meta_loss,
                       ) -> MetaWeights:
    """Exact one-step look-ahead meta weights of every pixel's real- and pseudo-label loss.

    Args:
        net: the network being trained (logits = net(x)).
        image: (N, C, *S) training batch; label: (N, *S) long given labels ỹ.
        meta_image: (M, C, *S) clean batch; meta_label: (M, *S) long trusted labels.
        lr: η, the look-ahead learning rate (> 0; it scales the raw weights only).
        pseudo_label: (N, *S) long ŷ, or None for argmax of the network's prediction on
            `image` (same forward pass, no gradient through it).
        pixel_loss: per-pixel loss map used for ℓʳ and ℓᵖ.
        meta_loss: scalar loss on the meta batch.
    Returns:
        MetaWeights (everything detached). The network's parameters, `.grad` fields and
        buffers are left as they were.
    """
    g, lmeta = meta_gradient(net, meta_image, meta_label, meta_loss)
    dot_r, dot_p, yhat = pixel_loss_directional(net, image, label, g, pseudo_label, pixel_loss)
    return _weights(lr * dot_r, lr * dot_p, yhat, lmeta)


def head_meta_pixel_weights(net: nn.Module, features: torch.Tensor, label: torch.Tensor,
                            meta_image: torch.Tensor, meta_label: torch.Tensor, *, lr: float,
                            pseudo_label: torch.Tensor | None = None, pixel_loss: PixelLoss = pixel_ce,
                            meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ce_meta_loss,
                            ) -> MetaWeights:
    """Meta weights of a look-ahead that moves only the network's head ([choice], optional).

    The same w̃ = η⟨∇ ℓ_i, ∇ L_meta⟩ with the gradients taken over the head's parameters
    only, i.e. exactly the look-ahead θ'_head = θ_head − η∇_head Σ ε_i ℓ_i with the body
    fixed. For the 1x1 head z = W f + b and the mean-CE meta loss over M meta pixels j this is
    w̃_i = (η/M) Σ_j (δ_i·δ_j)(f_i·f_j + 1), with δ = softmax(z) − onehot(target): a
    last-layer kernel in place of the whole network's. Cost: the meta batch's body forward
    without a graph, and the head (a 1x1 convolution) on the features the caller already
    has, so no pass over the training batch of its own.

    Args:
        net: a SegNet (`features(x)` and `head`).
        features: (N, F, *S) the training batch's last decoder features (e.g. of the
            training forward; detached here).
        label: (N, *S) long given labels ỹ.
        meta_image: (M, C, *S) clean batch; meta_label: (M, *S) long trusted labels.
        lr: η (> 0; scales the raw weights only).
        pseudo_label: (N, *S) long ŷ, or None for the argmax of head(features).
        pixel_loss, meta_loss: as in `meta_pixel_weights`.
    Returns:
        MetaWeights (everything detached); parameters, `.grad` fields and buffers unchanged.
    """
    with frozen_norm_stats(net), torch.no_grad(), torch.autocast(meta_image.device.type, enabled=False):
        meta_features = net.features(meta_image)
    g, lmeta = meta_gradient(net.head, meta_features, meta_label, meta_loss)
    dot_r, dot_p, yhat = pixel_loss_directional(net.head, features.detach(), label, g, pseudo_label, pixel_loss)
    return _weights(lr * dot_r, lr * dot_p, yhat, lmeta)


def soft_target(label: torch.Tensor, pseudo_label: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """t = (α·onehot(ỹ) + β·onehot(ŷ)) / (α + β) and the mask where α + β > 0.

    Args:
        label, pseudo_label: (N, *S) long.
        alpha, beta: (N, *S) weights.
    Returns:
        (t (N, K, *S), mask (N, *S) float); t is 0 where the mask is 0.
    """
    w = alpha + beta
    num = alpha.unsqueeze(1) * one_hot(label, num_classes) + beta.unsqueeze(1) * one_hot(pseudo_label, num_classes)
    return num / w.clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(1), (w > 0).float()


def meta_dice_loss(probs: torch.Tensor, label: torch.Tensor, pseudo_label: torch.Tensor, alpha: torch.Tensor,
                   beta: torch.Tensor, target: str, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Dice of a meta-weighted step: against the given labels over every annotated pixel
    (`target` 'given') or against the soft target of `soft_target` where α + β > 0 ('soft').

    Args:
        probs: (N, K, *S) probabilities.
        label, pseudo_label: (N, *S) long.
        alpha, beta: (N, *S) meta weights.
        target: 'given' or 'soft'.
        valid: optional (N, *S) bool, the annotated pixels (used by 'given').
    Returns:
        0-dim loss, 1 − mean foreground soft Dice.
    """
    k = probs.shape[1]
    if target == "given":
        return soft_dice_loss(probs, one_hot(label, k), weight=None if valid is None else valid.float())
    t, mask = soft_target(label, pseudo_label, alpha, beta, k)
    return soft_dice_loss(probs, t, weight=mask)


def flip_averaged_pseudo_label(net: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """argmax of `flip_averaged_probs`: image (N, C, *S) → (N, *S) long."""
    return flip_averaged_probs(net, image).max(1).indices


def weighted_bootstrap_loss(logits: torch.Tensor, label: torch.Tensor, pseudo_label: torch.Tensor,
                            alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor | None = None
                            ) -> torch.Tensor:
    """Σ_i γ_i·(α_i·CE(p_i, ỹ_i) + β_i·CE(p_i, ŷ_i)): L2B's loss, MetaDCSeg's with the DCD focus γ.

    Args:
        logits: (N, K, *S) (cast to float32 inside).
        label, pseudo_label: (N, *S) long.
        alpha, beta: (N, *S) non-negative weights (detached).
        gamma: optional (N, *S) per-pixel focus (1 when None).

    Returns:
        scalar float32.
    """
    per_pixel = alpha * pixel_ce(logits, label) + beta * pixel_ce(logits, pseudo_label)
    return (per_pixel if gamma is None else gamma * per_pixel).sum()


def wrong_label_logs(alpha: torch.Tensor, label: torch.Tensor, clean_label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where the given-label weight goes (benchmarks, with known clean labels), as tensors:
    ``meta/wrong_label_rate`` (share of wrong given labels) and ``meta/wrong_label_weight_share``
    (Σ_wrong α / Σα; NaN when Σα = 0)."""
    wrong = (label != clean_label).float()
    return {"meta/wrong_label_rate": wrong.mean(), "meta/wrong_label_weight_share": (alpha * wrong).sum() / alpha.sum()}


def class_weight_logs(alpha: torch.Tensor, label: torch.Tensor, pseudo_label: torch.Tensor,
                      num_classes: int) -> dict[str, torch.Tensor]:
    """Where the weight goes by class, as tensors, for every foreground class k:
    ``meta/alpha_share/c{k}`` (Σα over pixels labelled k / Σα; NaN when Σα = 0),
    ``meta/label_share/c{k}`` (share of pixels labelled k: the α share of uniform weights) and
    ``meta/pseudo_share/c{k}`` (share of pixels whose pseudo-label is k). A class whose α share
    falls far below its label share is being traded away."""
    total = alpha.sum()
    out = {}
    for k in range(1, num_classes):
        is_k = (label == k).float()
        out[f"meta/alpha_share/c{k}"] = (alpha * is_k).sum() / total
        out[f"meta/label_share/c{k}"] = is_k.mean()
        out[f"meta/pseudo_share/c{k}"] = (pseudo_label == k).float().mean()
    return out


def _masked_meta_loss(meta_loss, weight: torch.Tensor, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return meta_loss(logits, label, weight)


def weights_for_step(net: nn.Module, image: torch.Tensor, label: torch.Tensor, meta_image: torch.Tensor,
                     meta_label: torch.Tensor, *, lr: float, norm_stats: str = "batch", flip_average: bool = False,
                     meta_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ce_meta_loss,
                     scope: str = "all", features: torch.Tensor | None = None,
                     valid: torch.Tensor | None = None, meta_valid: torch.Tensor | None = None,
                     per_class: int = 0,
                     ) -> MetaWeights:
    """`meta_pixel_weights` (or `head_meta_pixel_weights`) as L2B and MetaDCSeg call it in a step.

    Args:
        norm_stats: 'batch' (batch-norm batch statistics inside the weighting passes, as in
            a training step) or 'running' (the network in eval mode for them).
        flip_average: pseudo-labels from the flip-averaged softmax instead of the plain argmax.
        scope: 'all' (the look-ahead over every trainable parameter) or 'head' (the head alone).
        features: scope 'head' only: (N, F, *S) features of `image` from the caller's training
            forward (computed here, without a graph, when None). They come in the mode the
            caller ran, so with 'running' statistics only the meta pass uses eval mode.
        valid, meta_valid: optional (N, *S) / (M, *S) bool, the annotated pixels of each batch:
            the others get no weight and no meta loss.
        per_class: K > 0 (the number of classes) normalises per class of the given label
            (`renormalise` with groups = label) instead of over the whole batch; 0: off.
    The network's mode is restored afterwards.
    """
    if meta_valid is not None:
        meta_loss = functools.partial(_masked_meta_loss, meta_loss, meta_valid.float())
    if valid is not None or per_class:
        mw = weights_for_step(net, image, label, meta_image, meta_label, lr=lr, norm_stats=norm_stats,
                              flip_average=flip_average, meta_loss=meta_loss, scope=scope, features=features)
        return renormalise(mw, valid, label.clamp_min(0) if per_class else None, per_class)
    was_training = net.training
    if norm_stats == "running":
        net.eval()
    try:
        pseudo = flip_averaged_pseudo_label(net, image) if flip_average else None
        if scope == "all":
            return meta_pixel_weights(net, image, label, meta_image, meta_label, lr=lr, pseudo_label=pseudo,
                                      pixel_loss=pixel_ce, meta_loss=meta_loss)
        if features is None:
            with frozen_norm_stats(net), torch.no_grad():
                features = net.features(image)
        return head_meta_pixel_weights(net, features, label, meta_image, meta_label, lr=lr, pseudo_label=pseudo,
                                       pixel_loss=pixel_ce, meta_loss=meta_loss)
    finally:
        net.train(was_training)
