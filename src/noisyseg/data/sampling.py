"""Deterministic training batches: random 2D/3D patches with foreground oversampling.

The batch of step `s` on process `rank` is a pure function of (seed, s, rank), so a
resumed run sees exactly the batches an uninterrupted one would, and torchrun processes
draw different data without any shared sampler state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .case import Case

_MAX_FG_COORDS = 20000


@dataclass
class _Item:
    image: np.ndarray  # (C, *S)
    label: np.ndarray  # (*S) class indices (int64, or the compact type of a memory-mapped case)
    clean_label: np.ndarray | None
    fg_coords: list[np.ndarray]  # per present foreground class, (M, D) voxel coordinates


def _fg_coords(label: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    coords = []
    for k in np.unique(label):
        if k <= 0:  # background and ignored (IGNORE_INDEX) pixels
            continue
        idx = np.argwhere(label == k)
        if len(idx) > _MAX_FG_COORDS:
            idx = idx[rng.choice(len(idx), _MAX_FG_COORDS, replace=False)]
        coords.append(idx.astype(np.int32))  # half of argwhere's int64 per stored voxel
    return coords


def _crop(arr: np.ndarray, starts: Sequence[int], size: Sequence[int], lead: int) -> np.ndarray:
    """Crop `arr` (lead leading non-spatial axes) at `starts` (may be negative or overrun),
    padding with zeros outside the array."""
    spatial = arr.shape[lead:]
    out = np.zeros(arr.shape[:lead] + tuple(size), dtype=arr.dtype)
    src, dst = [slice(None)] * lead, [slice(None)] * lead
    for st, sz, dim in zip(starts, size, spatial):
        a, b = max(st, 0), min(st + sz, dim)
        src.append(slice(a, b))
        dst.append(slice(a - st, b - st))
    out[tuple(dst)] = arr[tuple(src)]
    return out


class PatchSampler:
    """Draws batches of patches from in-memory cases.

    Args:
        cases: loaded cases; image (C, *S), label (*S).
        patch_size: patch per training axis (2 values for 2D training, 3 for 3D).
        batch_size: patches per batch.
        fg_oversample: probability that a patch is centred on a foreground voxel of a
            foreground class chosen uniformly (so minority classes are seen as often).
        augment: random flips, rot90 in the first two axes, and MONAI intensity jitter.
        slice_axis: for 2D training on volumes, the axis sliced away.
        seed: base seed of every random choice.
        use_clean_label: take `clean_label` as the label (the trusted/meta set).
    """

    def __init__(self, cases: Sequence[Case], *, patch_size: Sequence[int], batch_size: int,
                 fg_oversample: float, augment: bool, slice_axis: int = -1, seed: int = 0,
                 use_clean_label: bool = False):
        if not cases:
            raise ValueError("PatchSampler needs at least one case")
        self.data_dims = cases[0].image.ndim - 1
        self.train_dims = len(patch_size)
        self.slice_axis = slice_axis % self.data_dims if self.train_dims < self.data_dims else None
        self.patch = list(patch_size)
        if self.slice_axis is not None:
            self.patch.insert(self.slice_axis, 1)
        self.batch_size = batch_size
        self.fg_oversample = fg_oversample
        self.augment = augment
        self.seed = seed
        coord_rng = np.random.default_rng([seed, 7919])
        self.items: list[_Item] = []
        for c in cases:
            label = c.clean_label if (use_clean_label and c.clean_label is not None) else c.label
            self.items.append(_Item(c.image, label, c.clean_label, _fg_coords(label, coord_rng)))
        self.has_clean = all(it.clean_label is not None for it in self.items)
        self._intensity = self._make_intensity_transforms() if augment else []

    @staticmethod
    def _make_intensity_transforms():
        from monai.transforms import RandGaussianNoise, RandScaleIntensity, RandShiftIntensity

        return [RandScaleIntensity(factors=0.1, prob=0.5), RandShiftIntensity(offsets=0.1, prob=0.5),
                RandGaussianNoise(prob=0.15, std=0.05)]

    def _starts(self, item: _Item, rng: np.random.Generator) -> list[int]:
        shape = item.label.shape
        lo = [min(0, s - p) for s, p in zip(shape, self.patch)]
        hi = [max(0, s - p) for s, p in zip(shape, self.patch)]
        if item.fg_coords and rng.random() < self.fg_oversample:
            coords = item.fg_coords[rng.integers(len(item.fg_coords))]
            centre = coords[rng.integers(len(coords))]
            return [int(np.clip(c - p // 2, a, b)) for c, p, a, b in zip(centre, self.patch, lo, hi)]
        return [int(rng.integers(a, b + 1)) for a, b in zip(lo, hi)]

    def _augment(self, img: np.ndarray, labs: list[np.ndarray], rng: np.random.Generator):
        d = img.ndim - 1
        for ax in range(d):
            if rng.random() < 0.5:
                img = np.flip(img, ax + 1)
                labs = [np.flip(l, ax) for l in labs]
        if d >= 2 and img.shape[1] == img.shape[2]:
            k = int(rng.integers(4))
            img = np.rot90(img, k, axes=(1, 2))
            labs = [np.rot90(l, k, axes=(0, 1)) for l in labs]
        img = np.ascontiguousarray(img)
        for t in self._intensity:
            t.set_random_state(seed=int(rng.integers(2**31)))
            img = np.asarray(t(img), dtype=np.float32)
        return img, [np.ascontiguousarray(l) for l in labs]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        """One patch: image (C, *P) and [label (*P), clean_label (*P) if known]."""
        item = self.items[int(rng.integers(len(self.items)))]
        starts = self._starts(item, rng)
        img = _crop(item.image, starts, self.patch, lead=1)
        labs = [_crop(item.label, starts, self.patch, lead=0)]
        if self.has_clean:
            labs.append(_crop(item.clean_label, starts, self.patch, lead=0))
        if self.slice_axis is not None:
            img = img.squeeze(self.slice_axis + 1)
            labs = [l.squeeze(self.slice_axis) for l in labs]
        if self.augment:
            img, labs = self._augment(img, labs, rng)
        return img, labs

    def batch(self, step: int, rank: int = 0) -> dict[str, torch.Tensor]:
        """The batch of a step: image (N, C, *P) float32, label (N, *P) int64 and, when every
        case has a known clean label, clean_label (N, *P).

        When the patches hold ignored pixels (``IGNORE_INDEX``), ``valid`` (N, *P) bool marks the
        annotated ones and the labels hold class 0 at the others, so that methods index them
        safely and weight every label-dependent term by ``valid``."""
        rng = np.random.default_rng([self.seed, step, rank])
        samples = [self.sample(rng) for _ in range(self.batch_size)]
        label = np.stack([s[1][0] for s in samples]).astype(np.int64)
        out = {"image": torch.from_numpy(np.stack([s[0] for s in samples]).astype(np.float32))}
        valid = label >= 0
        if not valid.all():
            out["valid"] = torch.from_numpy(valid)
            label = np.maximum(label, 0)
        out["label"] = torch.from_numpy(label)
        if self.has_clean:
            out["clean_label"] = torch.from_numpy(np.maximum(np.stack([s[1][1] for s in samples]), 0).astype(np.int64))
        return out
