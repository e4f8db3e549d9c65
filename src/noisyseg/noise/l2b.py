"""L2B protocol: MetaDCSeg's 20/40/60 % noise levels (docs/reference.md §3).

Per 2D slice (3D volumes: along the last axis) and per foreground class with more than
``min_pixels`` pixels in that slice: rotate the class mask by U(-20, 20) degrees about its
centroid; dilate or erode (1/2 each) with a square kernel from ``KERNELS = (7, 14, 21, 28,
35)`` px drawn with level-specific probabilities p_j ∝ exp(-(j - s)^2 / (2 * 0.75^2)); with
probability 1/2 replace the mask by the ellipse inscribed in its bounding box. The level is
the mean 1 - Dice(noisy, clean) over cases, which depends on the structures' size:
:func:`calibrate_l2b` finds the shift s for a dataset by bisection, :func:`l2b_dataset` applies
it, :func:`l2b_calibrated` does both. Without calibration ``l2b(level=...)`` uses
:data:`DEFAULT_SHIFTS` (measured on synthetic blobs, a starting point only).

``l2b(label (*S) int, *, spacing=None, rng, level=0.4, shift=None, kernel_probs=None,
min_pixels, max_angle) -> (noisy (*S), info)``. Calibration details: docs/noise.md.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ._common import (
    BACKGROUND,
    as_volume,
    base_info,
    check_inputs,
    check_label,
    check_range,
    check_rng,
    finish,
    inscribed_ellipse,
    rotation_matrix,
)

KERNELS = (7, 14, 21, 28, 35)
MAX_ANGLE = 20.0
MIN_PIXELS = 300
SHIFT_WIDTH = 0.75
SHIFT_BOUNDS = (-2.0, 6.0)
# Calibrated (repeats=5) on the synthetic blob dataset of tests/noise (48 slices of
# 128x128 px, blob radii 12..40 px); see calibrate_l2b. Used only when neither shift
# nor kernel_probs is given; larger structures need larger shifts for the same level.
DEFAULT_SHIFTS = {0.2: -0.25, 0.4: 1.375, 0.6: 2.75}


def kernel_probs_from_shift(shift: float) -> list[float]:
    """Kernel probabilities for ``KERNELS`` given the scalar ``shift`` (see module doc)."""
    j = np.arange(len(KERNELS), dtype=float)
    logits = -((j - float(shift)) ** 2) / (2 * SHIFT_WIDTH**2)
    p = np.exp(logits - logits.max())
    return (p / p.sum()).tolist()


def _default_shift(level: float) -> float:
    lv = sorted(DEFAULT_SHIFTS)
    return float(np.interp(level, lv, [DEFAULT_SHIFTS[v] for v in lv]))


def _rotate_mask(mask: np.ndarray, angle_deg: float, reach: int) -> tuple[np.ndarray, tuple]:
    """Rotate a 2D mask about its centroid (nearest neighbour), on a crop around it."""
    pts = np.argwhere(mask)
    c = pts.mean(axis=0)
    rad = float(np.sqrt(((pts - c) ** 2).sum(axis=1)).max()) + reach + 2
    lo = np.maximum(np.floor(c - rad).astype(int), 0)
    hi = np.minimum(np.ceil(c + rad).astype(int) + 1, mask.shape)
    crop = mask[lo[0] : hi[0], lo[1] : hi[1]]
    rot = rotation_matrix(np.array([angle_deg]), 2)
    cc = c - lo
    # output o samples input i = cc + R^T (o - cc)
    m = rot.T
    offset = cc - m @ cc
    r = ndimage.affine_transform(crop.view(np.uint8), m, offset=offset, order=0, cval=0)
    out = np.zeros_like(mask)
    out[lo[0] : hi[0], lo[1] : hi[1]] = r.view(bool)
    return out, (slice(lo[0], hi[0]), slice(lo[1], hi[1]))


def _l2b_mask(mask, angle, dilate, ksize, ellipse):
    reach = ksize // 2 + 1
    rot, sl = _rotate_mask(mask, angle, reach)
    crop = rot[sl].view(np.uint8)
    if dilate:
        m = ndimage.maximum_filter(crop, size=ksize, mode="constant", cval=0)
    else:
        m = ndimage.minimum_filter(crop, size=ksize, mode="constant", cval=1)
    new = np.zeros_like(mask)
    new[sl] = m.view(bool)
    if ellipse and new.any():
        new = inscribed_ellipse(new)
    return new


def l2b(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    level: float = 0.4,
    shift: float | None = None,
    kernel_probs: list[float] | None = None,
    min_pixels: int = MIN_PIXELS,
    max_angle: float = MAX_ANGLE,
) -> tuple[np.ndarray, dict]:
    """L2B slice-wise noise (rotation, erode/dilate, ellipse) at a noise level.

    Args:
        label: integer label map, 2D or 3D (slices along the last axis).
        spacing: recorded only; the protocol is defined in pixels.
        rng: random generator; each eligible (slice, class) takes four draws.
        level: target 1 - Dice in (0, 1); picks the default shift when neither
            ``shift`` nor ``kernel_probs`` is given.
        shift: the calibrated scalar from :func:`calibrate_l2b`.
        kernel_probs: explicit probabilities for ``KERNELS`` (overrides shift/level).
        min_pixels: a class in a slice is corrupted only if it has more pixels.
        max_angle: rotation range in degrees.

    Returns:
        (noisy label, info); info["slices"] lists, per corrupted (slice, class), the
        rotation angle, op, kernel and whether the ellipse was used.
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    level = check_range("l2b level", level, 0.0, 1.0, lo_open=True, hi_open=True)
    if kernel_probs is not None:
        p = np.asarray(kernel_probs, dtype=float)
        if p.shape != (len(KERNELS),) or (p < 0).any() or p.sum() <= 0:
            raise ConfigError(
                f"kernel_probs must be {len(KERNELS)} non-negative numbers for kernels "
                f"{KERNELS}, got {kernel_probs!r}"
            )
        p = p / p.sum()
        shift_used = None if shift is None else float(shift)
    else:
        shift_used = _default_shift(level) if shift is None else float(shift)
        p = np.asarray(kernel_probs_from_shift(shift_used))
    cdf = np.cumsum(p)
    cdf[-1] = 1.0

    out = label.copy()
    has_bg = bool((label == BACKGROUND).any())
    records = []
    vol, src_vol = as_volume(out), as_volume(label)
    for z in range(src_vol.shape[-1]):
        sl2 = src_vol[..., z]
        vals, counts = np.unique(sl2, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        todo = []
        for i in order:
            k = int(vals[i])
            if k == BACKGROUND or counts[i] <= min_pixels:
                continue
            angle = float(rng.uniform(-max_angle, max_angle))
            dilate = bool(rng.random() < 0.5)
            u = float(rng.random())
            ellipse = bool(rng.random() < 0.5)
            kidx = int(np.searchsorted(cdf, u, side="right"))
            kidx = min(kidx, len(KERNELS) - 1)
            todo.append((k, angle, dilate, KERNELS[kidx], ellipse))
        if not todo:
            continue
        o2 = vol[..., z]
        for k, angle, dilate, ksize, ellipse in todo:
            mask = sl2 == k
            new = _l2b_mask(mask, angle, dilate, ksize, ellipse)
            if has_bg:
                o2[mask & ~new & (o2 == k)] = BACKGROUND
            o2[new] = k
            records.append(
                {"slice": z, "class": k, "angle": round(angle, 4),
                 "op": "dilate" if dilate else "erode", "kernel": ksize, "ellipse": ellipse}
            )
    info = base_info(
        "l2b", spacing, level=level, shift=shift_used, kernel_probs=[float(v) for v in p],
        kernels=list(KERNELS), min_pixels=int(min_pixels), max_angle=float(max_angle),
        n_corrupted=len(records), slices=records,
    )
    return finish(out, src), info


def case_rng(seed: int, case_index: int, repeat: int = 0) -> np.random.Generator:
    """The generator calibration uses for case ``case_index`` (pass ``repeat`` 0 to reproduce)."""
    return np.random.default_rng([int(seed), int(repeat), int(case_index)])


def _dataset_noise(labels, shift, seed, min_pixels, repeats=1) -> float:
    from .report import noise_stats

    vals = []
    for r in range(repeats):
        for i, lab in enumerate(labels):
            noisy, _ = l2b(lab, rng=case_rng(seed, i, r), shift=shift, min_pixels=min_pixels)
            k = int(max(lab.max(), noisy.max())) + 1
            vals.append(1.0 - noise_stats(lab, noisy, k)["dice"])
    return float(np.mean(vals))


def calibrate_l2b(
    labels: list[np.ndarray],
    level: float,
    rng: np.random.Generator,
    *,
    tol: float = 0.03,
    max_iter: int = 25,
    min_pixels: int = MIN_PIXELS,
    repeats: int = 1,
) -> dict:
    """Find the kernel-distribution shift so that mean 1 - Dice over ``labels`` ≈ level.

    Bisection on ``shift`` within ``SHIFT_BOUNDS`` with common random numbers: one seed
    is drawn from ``rng`` and case i always uses :func:`case_rng` (seed, i), so every
    evaluation sees the same angles/ops/uniforms and the level grows (near-)monotonically
    with the shift. Stops when the measured level is within tol/3 of the target (or
    after ``max_iter`` steps) and returns the best point.

    Two uses [choice]:
    - ``repeats=1`` (default): the result is exact for *this* dataset. Noising case i
      with ``case_rng(seed, i)`` and the returned ``shift`` (what :func:`l2b_dataset`
      does) reproduces ``achieved``, so the realised noisy training set has mean
      1 - Dice within tol of the level. This is what a benchmark needs.
    - ``repeats=R``: each evaluation averages R passes, estimating the *expected* level,
      for use with other seeds. The per-case spread is large (one case may lose its
      mask to a 35 px erosion), so a single fresh pass over ~50 slices can land
      0.03-0.06 away even from a well-calibrated expectation.

    Returns:
        {"level", "shift", "kernel_probs", "achieved", "n_cases", "repeats",
        "evaluations", "seed"}. Raises ConfigError when the level cannot be reached
        within ``tol`` on this dataset (structures too small or too large for the kernels).
    """
    rng = check_rng(rng)
    level = check_range("l2b level", level, 0.0, 1.0, lo_open=True, hi_open=True)
    labels = [check_label(lab, "calibration label") for lab in labels]
    if not labels:
        raise ConfigError("calibrate_l2b needs at least one label map")
    repeats = int(repeats)
    if repeats < 1:
        raise ConfigError(f"calibrate_l2b repeats must be >= 1, got {repeats}")
    seed = int(rng.integers(2**62))
    lo, hi = SHIFT_BOUNDS

    def f(s):
        return _dataset_noise(labels, s, seed, min_pixels, repeats)

    f_lo, f_hi = f(lo), f(hi)
    evals = [(lo, f_lo), (hi, f_hi)]
    if level < f_lo - tol or level > f_hi + tol:
        raise ConfigError(
            f"l2b level {level} is out of reach on this dataset: the kernel set gives "
            f"1 - Dice from {f_lo:.3f} to {f_hi:.3f}"
        )
    for _ in range(max_iter):
        best = min(evals, key=lambda e: abs(e[1] - level))
        if abs(best[1] - level) <= tol / 3:
            break
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        evals.append((mid, f_mid))
        if f_mid < level:
            lo = mid
        else:
            hi = mid
    shift, achieved = min(evals, key=lambda e: abs(e[1] - level))
    return {
        "level": level,
        "shift": float(shift),
        "kernel_probs": kernel_probs_from_shift(shift),
        "achieved": float(achieved),
        "n_cases": len(labels),
        "repeats": repeats,
        "evaluations": len(evals),
        "seed": seed,
        "min_pixels": int(min_pixels),
    }


def l2b_dataset(
    labels: list[np.ndarray], calibration: dict, *, spacing=None
) -> list[tuple[np.ndarray, dict]]:
    """Noise a dataset exactly as :func:`calibrate_l2b` measured it (same order, seeds).

    Returns one (noisy, info) per label; with a ``repeats=1`` calibration the mean
    1 - Dice equals calibration["achieved"].
    """
    seed = int(calibration["seed"])
    out = []
    for i, lab in enumerate(labels):
        out.append(
            l2b(lab, spacing=spacing, rng=case_rng(seed, i), level=calibration["level"],
                shift=calibration["shift"],
                min_pixels=calibration.get("min_pixels", MIN_PIXELS))
        )
    return out


def l2b_calibrated(labels: list[np.ndarray], level: float, rng: np.random.Generator, *, spacing=None,
                   **params) -> list[tuple[np.ndarray, dict]]:
    """L2B noise on a dataset at mean 1 - Dice ≈ `level`: :func:`calibrate_l2b` (with `params`)
    then :func:`l2b_dataset`; one (noisy, info) per label."""
    return l2b_dataset(labels, calibrate_l2b(labels, level, rng, **params), spacing=spacing)
