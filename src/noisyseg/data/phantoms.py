"""Procedural organ-like phantoms in 2D or 3D for tests and the 3D demo task.

A phantom is a smooth random structure (a union of randomly rotated, deformed
ellipsoids thresholded at a random foreground fraction) with, for more than two
classes, nested sub-structures carved out of it.  The image gets a different mean
intensity and smooth texture per class, partial-volume blur at the edges, a smooth
multiplicative bias field and additive Gaussian noise.  Everything is vectorised
numpy/scipy and drawn only from the generator passed in, so one seed gives one
phantom on every machine.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["make_phantom", "smooth_noise"]


def smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise with zero mean and unit standard deviation.

    Args:
        shape: spatial shape of the field.
        rng: source of randomness.
        sigma: smoothing width in voxels (the field's correlation length).
    Returns:
        float32 array of `shape`.
    """
    field = rng.standard_normal(shape, dtype=np.float32)
    if sigma > 0:
        field = ndimage.gaussian_filter(field, sigma=sigma, mode="reflect", truncate=3.0)
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field


def _random_rotation(ndim: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (ndim x ndim) from the QR of a Gaussian matrix."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _blob_field(coords: np.ndarray, rng: np.random.Generator, n_blobs: int,
                centre_spread: float) -> np.ndarray:
    """Implicit function of a union of random ellipsoids: < 1 inside, growing outside.

    `coords` is (ndim, *shape) in normalised units ([-1, 1] per axis).
    """
    ndim = coords.shape[0]
    flat = coords.reshape(ndim, -1)
    field = np.full(flat.shape[1], np.inf, dtype=np.float32)
    for _ in range(n_blobs):
        centre = rng.uniform(-centre_spread, centre_spread, size=(ndim, 1))
        radii = rng.uniform(0.2, 0.45, size=(ndim, 1))
        rot = _random_rotation(ndim, rng)
        local = rot @ (flat - centre) / radii
        field = np.minimum(field, np.sum(local * local, axis=0).astype(np.float32))
    return field.reshape(coords.shape[1:])


def _bias_field(coords: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth multiplicative bias: exp of a random quadratic polynomial, range about +-strength."""
    ndim = coords.shape[0]
    log_bias = np.zeros(coords.shape[1:], dtype=np.float32)
    for i in range(ndim):
        log_bias += rng.uniform(-1, 1) * coords[i]
        for j in range(i, ndim):
            log_bias += 0.5 * rng.uniform(-1, 1) * coords[i] * coords[j]
    peak = float(np.abs(log_bias).max())
    if peak > 0:
        log_bias *= strength / peak
    return np.exp(log_bias)


def make_phantom(
    shape: tuple[int, ...],
    rng: np.random.Generator,
    *,
    num_classes: int = 2,
    fg_fraction: tuple[float, float] = (0.06, 0.22),
    n_blobs: tuple[int, int] = (1, 3),
    noise_std: float = 0.06,
    bias_strength: float = 0.25,
    texture_std: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Make one random organ-like phantom image and its label map.

    Args:
        shape: spatial shape, 2 or 3 axes (each at least 4 voxels).
        rng: the only source of randomness; the same generator state gives the same phantom.
        num_classes: number of classes including background (>= 2).  Class 1 is the
            outer structure; classes 2..K-1 are nested sub-structures carved out of it.
        fg_fraction: range from which the foreground (all non-background classes)
            fraction of the voxels is drawn; the label hits it to within a voxel or so.
        n_blobs: inclusive range of the number of ellipsoids unioned into the structure.
        noise_std: standard deviation of the additive Gaussian noise (image units,
            class means lie roughly in 0.1..1).
        bias_strength: the multiplicative bias field spans about exp(+-bias_strength).
        texture_std: amplitude of the smooth per-class texture.
    Returns:
        (image, label): float32 array of `shape` and uint8 array of `shape` with values
        in 0..num_classes-1 (every class present).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 4:
        raise ValueError(f"phantom shape must have 2 or 3 axes of at least 4 voxels, got {shape}")
    if not 2 <= num_classes <= 255:
        raise ValueError(f"num_classes must be between 2 and 255, got {num_classes}")
    lo, hi = fg_fraction
    if not 0 < lo <= hi < 1:
        raise ValueError(f"fg_fraction must satisfy 0 < low <= high < 1, got {fg_fraction}")
    ndim = len(shape)
    size = float(np.mean(shape))
    axes = [np.linspace(-1.0, 1.0, s, dtype=np.float32) for s in shape]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"))

    # Outer structure: union of deformed ellipsoids, thresholded at a random fraction.
    nb = int(rng.integers(n_blobs[0], n_blobs[1] + 1))
    level = np.sqrt(_blob_field(coords, rng, nb, centre_spread=0.3))
    level += 0.35 * smooth_noise(shape, rng, sigma=size / 10)
    target = rng.uniform(lo, hi)
    n_fg = max(int(round(target * level.size)), num_classes - 1)
    order = np.argsort(level, axis=None, kind="stable")
    label = np.zeros(level.size, dtype=np.uint8)
    label[order[:n_fg]] = 1

    # Nested sub-structures: each takes a share of what is still class 1, grown
    # around a random seed voxel of it with a smooth, deformed boundary.
    if num_classes > 2:
        flat_coords = coords.reshape(ndim, -1)
        for k in range(2, num_classes):
            region = np.flatnonzero(label == 1)
            share = rng.uniform(0.25, 0.5) * (num_classes - k) / (num_classes - 1)
            n_k = min(max(int(round(share * region.size)), 1), region.size - 1)
            seed = flat_coords[:, region[rng.integers(region.size)]][:, None]
            scale = rng.uniform(0.6, 1.4, size=(ndim, 1))
            dist = np.sqrt(np.sum(((flat_coords[:, region] - seed) * scale) ** 2, axis=0))
            sub_noise = smooth_noise(shape, rng, sigma=size / 16).reshape(-1)[region]
            dist = dist + 0.08 * sub_noise
            label[region[np.argsort(dist, kind="stable")[:n_k]]] = k
    label = label.reshape(shape)

    # Intensities: background and class means well apart, in random order.
    bg_mean = rng.uniform(0.1, 0.3)
    levels = np.linspace(0.5, 0.95, num_classes - 1) + rng.uniform(-0.04, 0.04, num_classes - 1)
    means = np.concatenate([[bg_mean], rng.permutation(levels)]).astype(np.float32)
    tex_amp = (texture_std * rng.uniform(0.5, 1.5, num_classes)).astype(np.float32)
    texture = smooth_noise(shape, rng, sigma=1.5)
    image = means[label] + tex_amp[label] * texture
    image = ndimage.gaussian_filter(image, sigma=0.7, mode="nearest", truncate=3.0)
    image *= _bias_field(coords, rng, bias_strength)
    image += noise_std * rng.standard_normal(shape, dtype=np.float32)
    return image.astype(np.float32, copy=False), label
