"""`metadcseg`: pixel-wise meta weights with Dynamic Center Distance (Mu et al., arXiv 2511.18894).

One network and a trusted meta batch (`needs_trusted`; docs/reference.md §2). Stage 0
([choice], `meta_start`): CE + Dice on the given labels until the network finds every class
(`meta_warmup.py`). Then each step: meta weights α (given label) and β (pseudo label ŷ) per
pixel, scored by a class-balanced meta loss ([choice]), from an exact one-step
look-ahead (meta_weights.py), α, β = max(η⟨∇θ ℓ_i, ∇θ L_meta⟩, 0)/Z; from `dcd_start` on,
a per-pixel focus γ from the feature distances to EMA centers of the background, foreground
and boundary regions of ŷ (γ = 1 before). Loss Σ_i γ_i(α_i ℓʳ_i + β_i ℓᵖ_i) + λ_D·Dice(p, t),
soft target t = (αỹ + βŷ)/(α + β) where α + β > 0 (`dice_target: given`: Dice against the
given labels over every annotated pixel instead).

Batch: image (N, C, *S), label (N, *S), meta_image (M, C, *S), meta_label (M, *S)
[, clean_label, valid, meta_valid]. Parameters: `MetaDCSegParams` (`lookahead_scope: head`
moves only the 1x1 head in the look-ahead, about half the cost). AMP is declined.
Capability: `label_weights()` (α, β, ŷ), the audit's signal.
Logs: ``meta/alpha_mean``, ``meta/beta_mean`` (sum to 1), ``meta/kept_fraction``,
``meta/boundary_fraction``, ``meta/gamma_boundary_mean`` (with DCD), ``meta/stage``,
``meta/uniform_fallback``, ``meta/agreement`` and ``loss/warmup`` (stage 0, see `meta_start`),
``meta/alpha_share/c{k}``, ``meta/label_share/c{k}``, ``meta/pseudo_share/c{k}`` (per
foreground class k), ``meta_loss``, ``loss/weighted_ce``, ``loss/dice``; with
``clean_label`` ``meta/wrong_label_rate``, ``meta/wrong_label_weight_share``.
Design choices, cost and measurements: docs/methods/metadcseg.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field, field_validator

from ..config import StrictModel
from ..data.case import Case
from .base import LabelWeights, Method, StepInfo, StepOutput, host_logs, unit_channels
from .losses import ce_dice_loss, one_hot
from .meta_warmup import MetaWarmup
from .meta_weights import (
    balanced_ce_meta_loss,
    ce_meta_loss,
    class_weight_logs,
    meta_dice_loss,
    weighted_bootstrap_loss,
    weights_for_step,
    wrong_label_logs,
)
from .registry import register
from .shared import frozen_norm_stats

BACKGROUND, FOREGROUND, BOUNDARY = 0, 1, 2
NUM_REGIONS = 3


# ---------------------------------------------------------------------------------------
# Pure pieces
# ---------------------------------------------------------------------------------------

def _pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Max filter with a k-wide square/cube, same size; x (N, 1, *S) float."""
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(x, kernel_size=k, stride=1, padding=k // 2)


def dcd_regions(pseudo_label: torch.Tensor, fg_prob: torch.Tensor, *, boundary_width: int = 3,
                uncertainty_threshold: float = 0.5) -> torch.Tensor:
    """Background / foreground / boundary region of every pixel.

    Args:
        pseudo_label: (N, *S) long class indices; foreground is any class > 0.
        fg_prob: (N, *S) foreground probability (1 − p_background).
        boundary_width: odd side of the structuring element of the dilation and erosion.
        uncertainty_threshold: pixels with u = 1 − |2·fg_prob − 1| above it join the boundary.
    Returns:
        (N, *S) long: BACKGROUND (0), FOREGROUND (1) or BOUNDARY (2).
    """
    fg = (pseudo_label > 0).unsqueeze(1).float()
    dil = _pool(fg, boundary_width)
    ero = -_pool(-fg, boundary_width)
    band = (dil - ero).squeeze(1) > 0
    u = 1.0 - (2.0 * fg_prob - 1.0).abs()
    region = torch.where(fg.squeeze(1) > 0, FOREGROUND, BACKGROUND)
    return torch.where(band | (u > uncertainty_threshold), BOUNDARY, region)


def region_center_sums(features: torch.Tensor, region: torch.Tensor, weight: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted feature sums and weight mass per region.

    Args:
        features: (N, F, *S) features (L2-normalised along F).
        region: (N, *S) long in 0..NUM_REGIONS−1.
        weight: (N, *S) non-negative pixel weights (α + β).
    Returns:
        (sums (R, F), mass (R,)); the center of region r is sums[r] / mass[r].
    """
    n, c = features.shape[:2]
    w = one_hot(region, NUM_REGIONS).to(features.dtype) * weight.unsqueeze(1).to(features.dtype)
    sums = torch.einsum("nrp,nfp->rf", w.reshape(n, NUM_REGIONS, -1), features.reshape(n, c, -1))
    return sums, w.sum(dim=(0,) + tuple(range(2, w.ndim)))


def ema_centers(centers: torch.Tensor, ready: torch.Tensor, sums: torch.Tensor, mass: torch.Tensor,
                momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """c_k ← m·c_k + (1 − m)·ĉ_k for regions with mass > 0 (ĉ_k itself the first time).

    Args:
        centers: (R, F) current centers; ready: (R,) bool, whether a center has been set.
        sums, mass: from `region_center_sums`.
        momentum: m.
    Returns:
        (new centers (R, F), new ready (R,)).
    """
    seen = mass > 0
    batch = sums / mass.clamp_min(1e-12).unsqueeze(1)
    blended = torch.where(ready.unsqueeze(1), momentum * centers + (1 - momentum) * batch, batch)
    return torch.where(seen.unsqueeze(1), blended, centers), ready | seen


def center_distance(features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """d_k = 1 − cos(f, c_k) for every pixel and center.

    Args:
        features: (N, F, *S) L2-normalised features.
        centers: (R, F) centers (any norm; a zero center gives distance 1).
    Returns:
        (N, R, *S) distances in [0, 2].
    """
    c = F.normalize(centers.to(features.dtype), dim=1)
    return 1.0 - torch.einsum("nf...,rf->nr...", features, c)


def dcd_gamma(dist_map: torch.Tensor, region: torch.Tensor, temperature: float) -> torch.Tensor:
    """γ_i = DCD_i + q_bd,i, normalised to mean 1 over the batch.

    Args:
        dist_map: (N, R, *S) distances to the centers (R = 3: background, foreground, boundary).
        region: (N, *S) long region of each pixel.
        temperature: T of q = softmax_k(−d_k / T).
    Returns:
        (N, *S) non-negative γ with mean 1 (all ones if every raw γ is 0).
    """
    own = dist_map.gather(1, region.unsqueeze(1)).squeeze(1)
    q_bd = torch.softmax(-dist_map / temperature, dim=1)[:, BOUNDARY]
    g = own + q_bd
    mean = g.mean()
    return torch.where(mean > 0, g / mean, torch.ones_like(g))  # (no host sync)


# ---------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------

class MetaDCSegParams(StrictModel):
    """MetaDCSeg hyper-parameters.

    Args:
        lookahead_lr: η of the one-step look-ahead (scales the raw weights only).
        meta_start: [choice] the meta weights start once the network finds every given
            foreground class: when the running mean (momentum 0.9) of `class_agreement` of its
            training predictions reaches this value (see `meta_warmup.MetaWarmup`); before, the
            step is `supervised`'s CE + Dice on the given labels (stage 0). 0: meta weights from
            the first step (the paper).
        meta_loss: loss on the clean meta batch: 'ce_balanced' ([choice]: the mean over present
            classes of each class's mean CE, so a small structure has a class's say), 'ce' (L2B
            and the paper: the mean over pixels) or 'ce_dice'.
        weight_norm: how α, β are normalised: 'batch' (the paper: Z over both maps and the
            batch) or 'class' (per class of the given label, each class keeping its pixel share
            of the weight; see `meta_weights.renormalise`).
        pseudo_flip_average: pseudo-labels from the softmax averaged over flips along each
            spatial axis (1 + dims extra forward passes) instead of the plain prediction.
        dcd_start: fraction of training after which DCD weighting is on (stage 2).
        center_momentum: EMA momentum m of the feature centers.
        temperature: T of the soft assignment q = softmax(−d / T).
        boundary_width: odd side (px) of the structuring element of the boundary band.
        uncertainty_threshold: pixels with u = 1 − |2p_fg − 1| above it are boundary.
        dice_weight: λ_D of the Dice term.
        dice_target: what the Dice term compares with: 'soft' (the paper: the soft target t
            over the pixels with α + β > 0) or 'given' (the given labels over every annotated
            pixel, as in stage 0, so that pixels the weights drop still count; measured in
            docs/methods/metadcseg.md).
        weight_norm_stats: batch-norm statistics of the meta and jvp passes: 'batch' (training
            mode, the function a training step differentiates) or 'running' (eval mode).
        lookahead_scope: parameters the look-ahead moves: 'all' (the method: every trainable
            parameter, about 3x a supervised step) or 'head' ([choice], the 1x1 head alone, a
            last-layer kernel; about 1.6-1.7x; see `head_meta_pixel_weights`).
    """

    lookahead_lr: float = Field(1e-3, gt=0)
    meta_start: float = Field(0.3, ge=0.0, le=1.0)
    meta_loss: Literal["ce", "ce_dice", "ce_balanced"] = "ce_balanced"
    pseudo_flip_average: bool = False
    dcd_start: float = Field(0.1, ge=0.0, le=1.0)
    center_momentum: float = Field(0.9, ge=0.0, lt=1.0)
    temperature: float = Field(0.1, gt=0)
    boundary_width: int = Field(3, ge=1)
    uncertainty_threshold: float = Field(0.5, ge=0.0, le=1.0)
    dice_weight: float = Field(1.0, ge=0.0)
    dice_target: Literal["given", "soft"] = "soft"
    weight_norm_stats: Literal["batch", "running"] = "batch"
    lookahead_scope: Literal["all", "head"] = "all"
    weight_norm: Literal["batch", "class"] = "batch"

    @field_validator("boundary_width")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd, got {v}")
        return v


@register
class MetaDCSeg(Method):
    """Pixel-wise meta-learned weights of given vs pseudo labels, refocused on hard pixels
    near boundaries by Dynamic Center Distance. See the module docstring."""

    name = "metadcseg"
    figure_groups = ("meta",)
    Params = MetaDCSegParams
    relative_cost = 2.6
    needs_trusted = True
    supports_amp = False
    ddp_compatible = False  # the look-ahead's torch.autograd.grad (see engine/distributed.py)

    def __init__(self, params, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()
        feats = self.net.head.in_channels
        self.register_buffer("centers", torch.zeros(NUM_REGIONS, feats))
        self.register_buffer("centers_ready", torch.zeros(NUM_REGIONS, dtype=torch.bool))
        self.warmup = MetaWarmup(params.meta_start)

    # -- pieces of a step ------------------------------------------------------------

    def _meta_loss_fn(self):
        return {"ce": ce_meta_loss, "ce_dice": ce_dice_loss, "ce_balanced": balanced_ce_meta_loss}[
            self.params.meta_loss]

    def label_weights(self, image: torch.Tensor, label: torch.Tensor, meta_image: torch.Tensor,
                      meta_label: torch.Tensor, *, valid: torch.Tensor | None = None,
                      meta_valid: torch.Tensor | None = None) -> LabelWeights:
        """The meta weights α (given label) and β (pseudo label) of a batch (the audit's signal)."""
        mw = self.compute_weights(image, label, meta_image, meta_label, valid=valid, meta_valid=meta_valid)
        return LabelWeights(mw.alpha, mw.beta, mw.pseudo_label)

    def compute_weights(self, image: torch.Tensor, label: torch.Tensor, meta_image: torch.Tensor,
                        meta_label: torch.Tensor, features: torch.Tensor | None = None,
                        valid: torch.Tensor | None = None, meta_valid: torch.Tensor | None = None):
        """MetaWeights of a training batch against a meta batch (see meta_weights.py);
        `features` (N, F, *S) of `image`, when at hand, serve the 'head' look-ahead."""
        p = self.params
        return weights_for_step(self.net, image, label, meta_image, meta_label, lr=p.lookahead_lr,
                                norm_stats=p.weight_norm_stats, flip_average=p.pseudo_flip_average,
                                meta_loss=self._meta_loss_fn(), scope=p.lookahead_scope, features=features,
                                valid=valid, meta_valid=meta_valid,
                                per_class=self.num_classes if p.weight_norm == "class" else 0)

    def _regions_and_features(self, feats: torch.Tensor, logits: torch.Tensor, pseudo: torch.Tensor):
        p = self.params
        probs = torch.softmax(logits.detach().float(), 1)
        region = dcd_regions(pseudo, 1.0 - probs[:, 0], boundary_width=p.boundary_width,
                             uncertainty_threshold=p.uncertainty_threshold)
        return region, unit_channels(feats.detach().float())

    def _update_centers(self, f: torch.Tensor, region: torch.Tensor, weight: torch.Tensor) -> None:
        sums, mass = region_center_sums(f, region, weight)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)
            dist.all_reduce(mass)
        c, ready = ema_centers(self.centers, self.centers_ready, sums, mass, self.params.center_momentum)
        self.centers.copy_(c)
        self.centers_ready.copy_(ready)

    def gamma(self, f: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """γ (N, *S) of normalised features f (N, F, *S) and regions (N, *S) at the current centers."""
        return dcd_gamma(center_distance(f, self.centers), region, self.params.temperature)

    # -- the step --------------------------------------------------------------------

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        p = self.params
        if self.warmup.active:  # stage 0: CE + Dice on the given labels
            return self.warmup.step(self.net, batch, self.num_classes, dice_weight=p.dice_weight)
        image, label = batch["image"], batch["label"]
        meta = batch["meta_image"], batch["meta_label"]
        masks = {"valid": batch.get("valid"), "meta_valid": batch.get("meta_valid")}
        head_only = p.lookahead_scope == "head"
        mw = None if head_only else self.compute_weights(image, label, *meta, **masks)
        feats, logits = self.net.forward_with_features(image)  # the training forward (updates BN stats)
        if head_only:  # the head's look-ahead reads the training forward's features
            mw = self.compute_weights(image, label, *meta, features=feats, **masks)
        alpha, beta, pseudo = mw.alpha, mw.beta, mw.pseudo_label
        stage = 2 if info.progress >= p.dcd_start else 1
        with torch.no_grad():
            region, f = self._regions_and_features(feats, logits, pseudo)
            self._update_centers(f, region, alpha + beta)
            gamma = self.gamma(f, region) if stage == 2 else torch.ones_like(alpha)

        weighted_ce = weighted_bootstrap_loss(logits, label, pseudo, alpha, beta, gamma)
        dice = meta_dice_loss(torch.softmax(logits.float(), 1), label, pseudo, alpha, beta, p.dice_target,
                              masks["valid"])
        loss = weighted_ce + p.dice_weight * dice

        with torch.no_grad():
            boundary = (region == BOUNDARY).float()
            terms = {
                "meta/alpha_mean": alpha.sum(),  # mean of α in units of 1/M
                "meta/beta_mean": beta.sum(),
                "meta/kept_fraction": ((alpha + beta) > 0).float().mean(),
                "meta/boundary_fraction": boundary.mean(),
                "loss/weighted_ce": weighted_ce.detach(),
                "loss/dice": dice.detach(),
            }
            if stage == 2:  # NaN without boundary pixels (0/0)
                terms["meta/gamma_boundary_mean"] = (gamma * boundary).sum() / boundary.sum()
            if "clean_label" in batch:  # benchmarks only: how much weight lands on wrong labels
                terms.update(wrong_label_logs(alpha, label, batch["clean_label"]))
            terms.update(class_weight_logs(alpha, label, pseudo, self.num_classes))
            terms.update({"meta/uniform_fallback": mw.uniform, "meta_loss": mw.meta_loss})
        logs = host_logs(terms)  # the step's one device-to-host copy
        logs["meta/stage"] = float(stage)
        return StepOutput(loss, logs)

    # -- figures ---------------------------------------------------------------------

    def weight_maps(self, cases: list[Case], device: torch.device) -> list[dict[str, np.ndarray]]:
        """α, β (in units of 1/M), γ and the inputs of a few cases, 2D, for figures.

        Each case is its own training batch and, with its clean label when known (else its
        given label), its own meta batch. The network runs in its current mode. 3D cases:
        2D training takes the slice (last axis) with the most foreground; 3D training a
        crop of at most 64 voxels per axis around the foreground's centre, shown at its
        slice with the most foreground.
        """
        out = []
        for case in cases:
            if case.label is None:
                continue
            img, lab = case.image, case.label
            clean = case.clean_label
            if img.ndim - 1 == 3 and self.spatial_dims == 2:
                z = int(np.argmax((lab > 0).sum(axis=(0, 1))))
                img, lab = img[..., z], lab[..., z]
                clean = None if clean is None else clean[..., z]
            elif img.ndim - 1 == 3:
                sl = _crop_around_foreground(lab, 64)
                img, lab = img[(slice(None),) + sl], lab[sl]
                clean = None if clean is None else clean[sl]
            pad = [(0, (-s) % 32) for s in lab.shape]
            x = torch.from_numpy(np.pad(img, [(0, 0)] + pad)).float()[None].to(device)
            y = torch.from_numpy(np.pad(lab, pad).astype(np.int64))[None].to(device)
            meta_y = y if clean is None else torch.from_numpy(np.pad(clean, pad).astype(np.int64))[None].to(device)
            masks = {"valid": y >= 0 if bool((y < 0).any()) else None,  # ignored pixels (-1): no weight
                     "meta_valid": meta_y >= 0 if bool((meta_y < 0).any()) else None}
            mw = self.compute_weights(x, y.clamp_min(0), x, meta_y.clamp_min(0), **masks)
            with torch.no_grad(), frozen_norm_stats(self.net):
                feats, logits = self.net.forward_with_features(x)
                region, f = self._regions_and_features(feats, logits, mw.pseudo_label)
                gamma = self.gamma(f, region)
            crop = (0,) + tuple(slice(0, s) for s in lab.shape)
            m = mw.alpha.numel()
            maps = {"alpha": (mw.alpha * m)[crop], "beta": (mw.beta * m)[crop], "gamma": gamma[crop],
                    "pseudo": mw.pseudo_label[crop]}
            item = {k: v.cpu().numpy() for k, v in maps.items()}
            item.update(id=case.id, image=img[0], label=lab, clean=clean)
            if lab.ndim == 3:
                z = int(np.argmax((lab > 0).sum(axis=(0, 1))))
                for k in ("alpha", "beta", "gamma", "pseudo", "image", "label", "clean"):
                    if item[k] is not None:
                        item[k] = item[k][..., z]
            out.append(item)
        return out

    def write_figures(self, figures_dir: Path, cases: list[Case], device: torch.device) -> None:
        """`metadcseg_weight_maps.png`: α, β and γ over a few cases, given label in red, clean
        label in green if known."""
        from ..report.figures import save_figure

        items = self.weight_maps(cases, device)
        if not items:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = [("image", "image + given label"), ("alpha", "α (×M)"), ("beta", "β (×M)"), ("gamma", "γ (DCD)")]
        fig, axes = plt.subplots(len(items), len(cols), figsize=(2.8 * len(cols), 2.6 * len(items)), squeeze=False)
        for r, it in enumerate(items):
            for c, (key, title) in enumerate(cols):
                ax = axes[r, c]
                if key == "image":
                    ax.imshow(it["image"], cmap="gray")
                else:
                    ax.imshow(it["image"], cmap="gray")
                    im = ax.imshow(it[key], cmap="magma", alpha=0.75)
                    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
                if (it["label"] > 0).any():
                    ax.contour(it["label"] > 0, levels=[0.5], colors=["red"], linewidths=0.7)
                if it["clean"] is not None and (it["clean"] > 0).any():
                    ax.contour(it["clean"] > 0, levels=[0.5], colors=["lime"], linewidths=0.7)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(title, fontsize=8)
            axes[r, 0].set_ylabel(it["id"], fontsize=7)
        fig.tight_layout()
        save_figure(fig, Path(figures_dir) / "metadcseg_weight_maps.png")


def _crop_around_foreground(label: np.ndarray, size: int) -> tuple[slice, ...]:
    """Slices of a box of side min(shape, size) per axis centred on the foreground's centre."""
    idx = np.argwhere(label > 0)
    centre = idx.mean(0).astype(int) if len(idx) else np.array(label.shape) // 2
    out = []
    for c, s in zip(centre, label.shape):
        w = min(s, size)
        lo = int(np.clip(c - w // 2, 0, s - w))
        out.append(slice(lo, lo + w))
    return tuple(out)
