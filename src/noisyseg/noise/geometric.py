"""Shape noise: per-structure affine moves, random polygons, bounding-box ellipses.

These follow the noise types seen in the field (docs/reference.md §3: MS-TFAL's random
polygons and per-instance affine; L2B's ellipse replacement).

Common rules [choice]:
- A "structure" for ``affine`` is a connected component (full connectivity) of the
  whole foreground, moved with all its classes inside (nearest-neighbour resampling of
  the label values), so nested structures move together. For ``polygon`` and
  ``ellipse`` it is a connected component of one class in one 2D slice (3D: slices
  along the last axis), since both shapes are 2D.
- The structures' old pixels become background 0 (when 0 occurs in the label), then the
  new shapes are painted from the largest to the smallest structure, so small ones end
  on top. No value absent from the input is written.
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
    check_range,
    components_by_area,
    finish,
    full_structure,
    inscribed_ellipse,
    rotation_matrix,
)


def affine(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    max_angle: float = 15.0,
    max_shift: float = 5.0,
    max_scale: float = 0.15,
) -> tuple[np.ndarray, dict]:
    """Move every connected structure by its own random rotation, translation and scale.

    Args:
        label: integer label map, 2D or 3D.
        spacing: if given, ``max_shift`` is in mm and converted per axis; else voxels.
        rng: random generator.
        max_angle: rotation angle(s) from U(-max_angle, max_angle) degrees (3D: one
            angle per axis plane, composed).
        max_shift: translation per axis from U(-max_shift, max_shift).
        max_scale: isotropic scale factor from U(1 - max_scale, 1 + max_scale).

    Returns:
        (noisy label, info) with one record per structure in info["structures"].
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    max_angle = check_range("affine max_angle", max_angle, 0.0, 180.0)
    max_shift = check_range("affine max_shift", max_shift, 0.0, 1e6)
    max_scale = check_range("affine max_scale", max_scale, 0.0, 1.0, hi_open=True)
    nd = label.ndim
    shift_vox = (
        np.full(nd, max_shift) if spacing is None else max_shift / np.asarray(spacing)
    )
    fg = label != BACKGROUND
    comp, n = ndimage.label(fg, structure=full_structure(nd))
    out = label.copy()
    records = []
    if n and (~fg).any():
        objs = ndimage.find_objects(comp)
        moved = []
        for i, sl in enumerate(objs, start=1):
            n_angles = 1 if nd == 2 else 3
            angles = rng.uniform(-max_angle, max_angle, size=n_angles)
            shift = rng.uniform(-1, 1, size=nd) * shift_vox
            scale = float(rng.uniform(1 - max_scale, 1 + max_scale))
            m_local = comp[sl] == i
            pts = np.argwhere(m_local) + np.array([s.start for s in sl])
            c = pts.mean(axis=0)
            rad = float(np.sqrt(((pts - c) ** 2).sum(axis=1)).max())
            reach = rad * max(scale, 1.0) + np.abs(shift) + 2
            lo = np.maximum(np.floor(c - reach).astype(int), 0)
            hi = np.minimum(np.ceil(c + reach).astype(int) + 1, label.shape)
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            vals = np.where(comp[box] == i, label[box], 0)
            a = scale * rotation_matrix(angles, nd)
            ainv = np.linalg.inv(a)
            cc = c - lo
            # output o samples input i = cc + A^-1 (o - cc - shift)
            offset = cc - ainv @ (cc + shift)
            res = ndimage.affine_transform(vals, ainv, offset=offset, order=0, cval=0)
            moved.append((int(m_local.sum()), box, res))
            records.append(
                {"structure": i, "angles": [round(float(x), 4) for x in angles],
                 "shift": [round(float(x), 4) for x in shift], "scale": round(scale, 6),
                 "voxels": int(m_local.sum())}
            )
        out[fg] = BACKGROUND
        for _, box, res in sorted(moved, key=lambda t: -t[0]):
            o = out[box]
            m = res != BACKGROUND
            o[m] = res[m]
    info = base_info(
        "affine", spacing, max_angle=max_angle, max_shift=max_shift, max_scale=max_scale,
        n_structures=int(n), structures=records,
    )
    return finish(out, src), info


def _star_polygon(mask: np.ndarray, rng, n_vertices: int, jitter: float) -> np.ndarray:
    """A random star-shaped polygon around the centroid that roughly covers ``mask``.

    Vertex i sits at angle θ_i (evenly spaced, random start, ±40 % angular jitter) at the
    structure's largest radius in θ_i's angular sector times U(1 - jitter, 1 + jitter).
    Rasterised exactly: a pixel is inside if its radius is below the polygon edge's
    radius along the same ray (the polar equation of the edge's line).
    """
    pts = np.argwhere(mask).astype(float)
    c = pts.mean(axis=0)
    gap = 2 * np.pi / n_vertices
    theta = rng.uniform(0, 2 * np.pi) + gap * (
        np.arange(n_vertices) + rng.uniform(-0.4, 0.4, size=n_vertices)
    )
    factor = rng.uniform(1 - jitter, 1 + jitter, size=n_vertices)
    t0 = theta[0]
    th = np.sort(np.mod(theta - t0, 2 * np.pi))
    d = pts - c
    r_pts = np.hypot(d[:, 0], d[:, 1]) + 0.5
    phi = np.mod(np.arctan2(d[:, 0], d[:, 1]) - t0, 2 * np.pi)
    # sector of vertex j: angles nearer to th[j] than to its neighbours
    mids = (th + np.append(th[1:], th[0] + 2 * np.pi)) / 2
    sector = np.searchsorted(mids, phi) % n_vertices
    sector[phi >= mids[-1]] = 0
    r_v = np.zeros(n_vertices)
    np.maximum.at(r_v, sector, r_pts)
    if (r_v == 0).any():  # empty sector: interpolate from the others (circularly)
        ok = r_v > 0
        r_v[~ok] = np.interp(th[~ok], th[ok], r_v[ok], period=2 * np.pi)
    r_v = np.maximum(r_v * factor, 0.75)

    rmax = float(r_v.max()) + 1
    lo = np.maximum(np.floor(c - rmax).astype(int), 0)
    hi = np.minimum(np.ceil(c + rmax).astype(int) + 1, mask.shape)
    yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    dy, dx = yy - c[0], xx - c[1]
    r = np.hypot(dy, dx)
    ph = np.mod(np.arctan2(dy, dx) - t0, 2 * np.pi)
    j = np.searchsorted(th, ph, side="right") - 1
    j[j < 0] = n_vertices - 1
    jn = (j + 1) % n_vertices
    delta = np.mod(th[jn] - th[j], 2 * np.pi)
    delta[delta == 0] = 2 * np.pi
    alpha = np.mod(ph - th[j], 2 * np.pi)
    r1, r2 = r_v[j], r_v[jn]
    denom = r1 * np.sin(alpha) + r2 * np.sin(delta - alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_edge = np.where(denom > 0, r1 * r2 * np.sin(delta) / denom, np.minimum(r1, r2))
    out = np.zeros(mask.shape, dtype=bool)
    out[lo[0] : hi[0], lo[1] : hi[1]] = r <= r_edge
    return out


def _per_slice_shapes(label, make_shape) -> tuple[np.ndarray, int]:
    out = label.copy()
    has_bg = bool((label == BACKGROUND).any())
    vol_in, vol_out = as_volume(label), as_volume(out)
    n = 0
    for z in range(vol_in.shape[-1]):
        s_in = vol_in[..., z]
        if not (s_in != BACKGROUND).any():
            continue
        comps = components_by_area(s_in)
        shapes = [(k, make_shape(m)) for k, m, _ in comps]
        s_out = vol_out[..., z]
        if has_bg:
            s_out[s_in != BACKGROUND] = BACKGROUND
        for k, shape in shapes:
            s_out[shape] = k
        n += len(comps)
    return out, n


def polygon(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    vertices: tuple[int, int] = (5, 12),
    jitter: float = 0.2,
) -> tuple[np.ndarray, dict]:
    """Replace every 2D structure (per slice in 3D) by a random polygon roughly covering it.

    Args:
        vertices: inclusive range of the number of vertices, drawn per structure.
        jitter: each vertex radius is scaled by U(1 - jitter, 1 + jitter).
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    vlo, vhi = (int(v) for v in vertices)
    if not 4 <= vlo <= vhi:
        # >= 4 keeps every angular gap below 180 degrees, so the polygon stays star-shaped
        raise ConfigError(f"polygon vertices must be a range 4 <= min <= max, got {vertices!r}")
    jitter = check_range("polygon jitter", jitter, 0.0, 1.0, hi_open=True)

    def make(mask):
        return _star_polygon(mask, rng, int(rng.integers(vlo, vhi + 1)), jitter)

    out, n = _per_slice_shapes(label, make)
    info = base_info("polygon", spacing, vertices=[vlo, vhi], jitter=jitter, n_structures=n)
    return finish(out, src), info


def ellipse(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    probability: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """Replace 2D structures (per slice in 3D) by the ellipse inscribed in their bounding box.

    Args:
        probability: each structure is replaced with this probability (default 1: all).
            One draw per structure is always taken from ``rng``.
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    probability = check_range("ellipse probability", probability, 0.0, 1.0)
    replaced = [0]

    def make(mask):
        if rng.random() < probability:
            replaced[0] += 1
            return inscribed_ellipse(mask)
        return mask

    out, n = _per_slice_shapes(label, make)
    info = base_info(
        "ellipse", spacing, probability=probability, n_structures=n, n_replaced=replaced[0]
    )
    return finish(out, src), info
