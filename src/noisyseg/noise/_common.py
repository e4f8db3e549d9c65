"""Shared helpers for the label-noise generators.

Conventions used by every generator in :mod:`noisyseg.noise`:

- A label map is an integer (or bool) array of class indices, 2D ``(H, W)`` or 3D
  ``(X, Y, Z)``. Class ``0`` is the background; every other value is a foreground
  class. "Slices" of a 3D volume are taken along the last axis.
- Generators never write a value that is absent from the input: pixels vacated by a
  shrinking/moving structure become background ``0`` only when ``0`` occurs in the
  input; otherwise they keep their value.
- All randomness comes from the ``rng`` argument (a ``numpy.random.Generator``).
- The info dict holds only JSON types (str, int, float, bool, list, dict, None).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ConfigError, DataError

BACKGROUND = 0


def check_label(label: Any, name: str = "label") -> np.ndarray:
    """Return ``label`` as an integer array, or raise DataError with one clear line."""
    if not isinstance(label, np.ndarray):
        raise DataError(f"{name} must be a numpy array, got {type(label).__name__}")
    if label.ndim not in (2, 3):
        raise DataError(f"{name} must be 2D (H, W) or 3D (X, Y, Z), got shape {label.shape}")
    if label.dtype == bool:
        return label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise DataError(f"{name} must hold integer class indices, got dtype {label.dtype}")
    if label.size and label.min() < 0:
        raise DataError(f"{name} has negative class indices (min {int(label.min())})")
    return label


def check_inputs(label: Any, rng: Any, spacing) -> tuple[np.ndarray, np.random.Generator, tuple | None]:
    """The checks every generator starts with: (label as integers, rng, spacing as floats)."""
    label = check_label(label)
    return label, check_rng(rng), check_spacing(spacing, label.ndim)


def check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def finish(noisy: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Cast the working array back to the caller's dtype (bool stays bool)."""
    return noisy.astype(original.dtype, copy=False)


def check_range(name: str, value: float, lo: float, hi: float, *, lo_open=False, hi_open=False):
    """Raise ConfigError unless lo <= value <= hi (with optional open ends)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    bad_lo = v <= lo if lo_open else v < lo
    bad_hi = v >= hi if hi_open else v > hi
    if bad_lo or bad_hi or not np.isfinite(v):
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ConfigError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {value!r}")
    return v


def bbox_slices(mask: np.ndarray, margin: int | tuple[int, ...] = 0) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` grown by ``margin`` per axis, clipped; None if empty."""
    if np.isscalar(margin):
        margin = (int(margin),) * mask.ndim
    out = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        lo = max(int(hit[0]) - margin[ax], 0)
        hi = min(int(hit[-1]) + margin[ax] + 1, mask.shape[ax])
        out.append(slice(lo, hi))
    return tuple(out)


def as_volume(label: np.ndarray) -> np.ndarray:
    """A 3D view of a label map: itself in 3D, (H, W, 1) in 2D, so that slices along the last
    axis cover both cases (writes through the view reach the original)."""
    return label if label.ndim == 3 else label[..., None]


def rotation_matrix(angles_deg: np.ndarray, ndim: int) -> np.ndarray:
    """2D: rotation by angles_deg[0]; 3D: rotations in the three axis planes, composed."""
    if ndim == 2:
        t = np.deg2rad(angles_deg[0])
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    r = np.eye(3)
    for ax, a in enumerate(np.deg2rad(angles_deg)):
        c, s = np.cos(a), np.sin(a)
        i, j = [p for p in range(3) if p != ax]
        m = np.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        r = m @ r
    return r


def full_structure(ndim: int) -> np.ndarray:
    """Full connectivity (8 in 2D, 26 in 3D): a 'structure' is one blob."""
    return ndimage.generate_binary_structure(ndim, ndim)


def fg_classes(label: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(label) if v != BACKGROUND]


def components_by_area(slice2d: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
    """Connected components (full connectivity) of every foreground class of a 2D array.

    Returns (class, mask, area) tuples sorted by decreasing area, so that painting them
    in order leaves small structures on top of large ones.
    """
    comps = []
    st = full_structure(2)
    for k in fg_classes(slice2d):
        lab, n = ndimage.label(slice2d == k, structure=st)
        if n == 0:
            continue
        objs = ndimage.find_objects(lab)
        for i, sl in enumerate(objs, start=1):
            m = np.zeros(slice2d.shape, dtype=bool)
            m[sl] = lab[sl] == i
            comps.append((k, m, int(m[sl].sum())))
    comps.sort(key=lambda c: -c[2])
    return comps


def inscribed_ellipse(mask: np.ndarray) -> np.ndarray:
    """The filled ellipse inscribed in the bounding box of a 2D ``mask`` (same shape)."""
    out = np.zeros(mask.shape, dtype=bool)
    sl = bbox_slices(mask)
    if sl is None:
        return out
    (r0, r1), (c0, c1) = (sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop)
    cy, cx = (r0 + r1 - 1) / 2.0, (c0 + c1 - 1) / 2.0
    a, b = (r1 - r0) / 2.0, (c1 - c0) / 2.0
    yy = (np.arange(r0, r1) - cy)[:, None] / a
    xx = (np.arange(c0, c1) - cx)[None, :] / b
    out[r0:r1, c0:c1] = yy**2 + xx**2 <= 1.0
    return out


def base_info(protocol: str, spacing, **params) -> dict:
    info = {"protocol": protocol}
    info.update(params)
    info["spacing"] = None if spacing is None else [float(s) for s in spacing]
    return info


def check_spacing(spacing, ndim: int):
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or any(not np.isfinite(s) or s <= 0 for s in sp):
        raise ConfigError(f"spacing must be {ndim} positive numbers, got {spacing!r}")
    return sp
