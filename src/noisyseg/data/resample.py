"""Resampling to a target voxel spacing (`data.target_spacing`), and back for predictions.

Training and the networks' inputs live on the target grid (images linear, labels nearest
neighbour); predictions are brought back to the original grid by interpolating the class
probabilities (trilinear / bilinear) before the argmax, so every output and every metric is
on the input's own voxels and spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .case import Case


def zoom_factors(spacing: Sequence[float], target: Sequence[float]) -> tuple[float, ...]:
    """Per-axis factor new_size / old_size = spacing / target (ValueError on an axis mismatch)."""
    if len(spacing) != len(target):
        raise ValueError(f"target spacing {list(target)} has {len(target)} axes but the data has {len(spacing)}")
    return tuple(float(s) / float(t) for s, t in zip(spacing, target))


def resample_image(image: np.ndarray, factors: Sequence[float]) -> np.ndarray:
    """(C, *S) float image → (C, *S') by linear interpolation per channel, float32."""
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return image
    return np.stack([ndimage.zoom(ch, factors, order=1, mode="nearest", grid_mode=True) for ch in image]
                    ).astype(np.float32)


def resample_label(label: np.ndarray, factors: Sequence[float]) -> np.ndarray:
    """(*S) integer label → (*S') by nearest neighbour."""
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return label
    return ndimage.zoom(label, factors, order=0, mode="nearest", grid_mode=True).astype(label.dtype)


def in_plane_factors(shape: Sequence[int], size: Sequence[int], slice_axis: int = -1) -> tuple[float, ...]:
    """Zoom factors that bring the in-plane axes of a (*S) grid to `size` (2 values) and keep
    the `slice_axis` of a volume as it is (a 2D grid has no slice axis)."""
    volume = len(shape) > len(size)
    axes = [a for a in range(len(shape)) if not volume or a != slice_axis % len(shape)]
    if len(axes) != len(size):
        raise ValueError(f"slice size {list(size)} has {len(size)} axes; the grid {tuple(shape)} has {len(axes)} in plane")
    f = [1.0] * len(shape)
    for a, s in zip(axes, size):
        f[a] = float(s) / float(shape[a])
    return tuple(f)


def resize_case(case: Case, size: Sequence[int] | None, slice_axis: int = -1) -> Case:
    """The case with every slice (or the 2D image) resized in plane to `size` (images linear,
    labels nearest; spacing and affine follow), or itself when `size` is None."""
    if size is None:
        return case
    f = in_plane_factors(case.spatial_shape, size, slice_axis)
    if all(abs(v - 1.0) < 1e-6 for v in f):
        return case
    return _zoom_case(case, f, tuple(float(s) / v for s, v in zip(case.spacing, f)))


def resample_case(case: Case, target: Sequence[float] | None) -> Case:
    """The case on the target grid (image, label, clean label, spacing, affine), or itself
    when no target is set."""
    if target is None:
        return case
    return _zoom_case(case, zoom_factors(case.spacing, target), tuple(float(t) for t in target))


def _zoom_case(case: Case, f: Sequence[float], spacing: tuple[float, ...]) -> Case:
    affine = case.affine.copy()
    # voxel centres (grid_mode): new voxel 0 sits at old index 0.5/f − 0.5 of each axis
    affine[:3, 3] += case.affine[:3, :len(f[:3])] @ (0.5 / np.asarray(f[:3]) - 0.5)
    for ax, fac in enumerate(f[:3]):
        affine[:3, ax] = affine[:3, ax] / fac
    return replace(case, image=resample_image(case.image, f),
                   label=None if case.label is None else resample_label(case.label, f),
                   clean_label=None if case.clean_label is None else resample_label(case.clean_label, f),
                   spacing=spacing, affine=affine)


def restore_probs(probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(K, *S') class probabilities → (K, *shape) by (bi/tri)linear interpolation (align_corners=False,
    the same voxel-centre convention as `resample_image`)."""
    if tuple(probs.shape[1:]) == tuple(shape):
        return probs
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    t = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))[None]
    return F.interpolate(t, size=tuple(shape), mode=mode, align_corners=False)[0].numpy()
