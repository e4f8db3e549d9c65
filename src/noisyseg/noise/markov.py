"""Markov boundary noise: a random walk of the label boundary (SpatialCorrection style).

A reconstruction [choice] of the Markov label-noise model of Yao et al. (ICLR 2023, "Learning to
segment from noisy annotations: a spatial correction approach"). For ``iterations`` steps, over
the whole map at once: the step's preference θ_t = clip(preference + sqrt(variance)·N(0, 1), 0, 1);
every pixel looks at one random face neighbour and, if its class differs, takes it with
probability θ_t (expansion of the foreground), 1 - θ_t (shrinkage) or 1/2 (two foreground
classes). No new values appear; a changed pixel lies within city-block distance T of the clean
boundary.

``markov(label (*S) int, *, spacing=None, rng, iterations, preference, variance) -> (noisy, info)``.
Design notes: docs/noise.md.
"""

from __future__ import annotations

import numpy as np

from ._common import (
    BACKGROUND,
    base_info,
    bbox_slices,
    check_inputs,
    check_range,
    finish,
)


def boundary_mask(label: np.ndarray) -> np.ndarray:
    """Pixels with at least one face neighbour of another class."""
    b = np.zeros(label.shape, dtype=bool)
    for ax in range(label.ndim):
        lo = [slice(None)] * label.ndim
        hi = [slice(None)] * label.ndim
        lo[ax] = slice(None, -1)
        hi[ax] = slice(1, None)
        d = label[tuple(lo)] != label[tuple(hi)]
        b[tuple(lo)] |= d
        b[tuple(hi)] |= d
    return b


def markov(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    iterations: int = 10,
    preference: float = 0.5,
    variance: float = 0.05,
) -> tuple[np.ndarray, dict]:
    """Random walk of the boundary for ``iterations`` steps (see module doc).

    Args:
        label: integer label map, 2D or 3D.
        spacing: recorded only (the walk moves in voxel steps).
        rng: random generator.
        iterations: number of steps T >= 0; changes stay within T voxels of the boundary.
        preference: θ in [0, 1], probability of expansion over shrinkage.
        variance: variance >= 0 of the per-step preference around ``preference``.

    Returns:
        (noisy label, info) with the per-step preferences in info["thetas"].
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    iterations = int(check_range("markov iterations", iterations, 0, 10_000))
    preference = check_range("markov preference", preference, 0.0, 1.0)
    variance = check_range("markov variance", variance, 0.0, 1.0)

    thetas = np.clip(preference + np.sqrt(variance) * rng.standard_normal(iterations), 0, 1)
    out = label.copy()
    bmask = boundary_mask(label)
    sl = bbox_slices(bmask, iterations + 1) if iterations else None
    if sl is not None:
        cur = label[sl].copy()  # never a view: the input must stay untouched
        shape = cur.shape
        flat = cur.reshape(-1)
        nd = cur.ndim
        for theta in thetas:
            b = np.flatnonzero(boundary_mask(cur))
            if b.size == 0:
                break
            coords = np.unravel_index(b, shape)
            direction = rng.integers(0, 2 * nd, size=b.size)
            axis = direction // 2
            step = np.where(direction % 2 == 1, 1, -1)
            nbc = []
            for a in range(nd):
                ca = coords[a].copy()
                m = axis == a
                ca[m] = np.clip(ca[m] + step[m], 0, shape[a] - 1)
                nbc.append(ca)
            c = flat[b]
            n = flat[np.ravel_multi_index(tuple(nbc), shape)]
            keep = np.flatnonzero(n != c)
            c, n, b = c[keep], n[keep], b[keep]
            p = np.full(b.size, 0.5)
            p[c == BACKGROUND] = theta
            p[n == BACKGROUND] = 1.0 - theta
            flip = rng.random(b.size) < p
            flat[b[flip]] = n[flip]
        out[sl] = cur
    info = base_info(
        "markov", spacing, iterations=iterations, preference=preference, variance=variance,
        thetas=[round(float(t), 6) for t in thetas],
        changed_voxels=int((out != label).sum()),
    )
    return finish(out, src), info
