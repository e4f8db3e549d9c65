"""Synthetic label maps for the noise tests (a uniquely named module, imported directly)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def make_blob(shape, center, radii, rng, roughness=0.25):
    """A smooth, irregular blob: an ellipse/ellipsoid whose radius is modulated by noise."""
    grids = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(radii) / 3)
    noise /= noise.std() + 1e-12
    return np.sqrt(r2) <= 1.0 + roughness * noise * 0.5


def blob_dataset_2d(n=48, size=128, seed=0):
    """2D binary blob slices with radii 12..40 px (all > 300 px)."""
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n):
        radii = rng.uniform(12, 40, size=2)
        center = rng.uniform(size / 2 - 15, size / 2 + 15, size=2)
        m = make_blob((size, size), center, radii, rng)
        labels.append(m.astype(np.uint8))
    return labels


def multiclass(shape, rng):
    """Values {0, 1, 3}: a class-1 blob with a class-3 blob inside it, and a separate 3."""
    big = make_blob(shape, [s * 0.45 for s in shape], [s * 0.3 for s in shape], rng)
    inner = make_blob(shape, [s * 0.45 for s in shape], [s * 0.12 for s in shape], rng)
    other = make_blob(shape, [s * 0.85 for s in shape], [s * 0.08 for s in shape], rng)
    lab = np.zeros(shape, dtype=np.int32)
    lab[big] = 1
    lab[inner] = 3
    lab[other & ~big] = 3
    return lab
