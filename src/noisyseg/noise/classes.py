"""Class noise: component class swaps and per-pixel flips (ADELE-style, docs/reference.md §3).

Both only write classes present in the input label: a swapped component takes another
foreground class of the same label, a flipped pixel another class of the same label.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import (
    BACKGROUND,
    base_info,
    check_inputs,
    check_range,
    fg_classes,
    finish,
    full_structure,
)


def classswap(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    fraction: float = 0.3,
) -> tuple[np.ndarray, dict]:
    """Relabel a random fraction of connected components to another present fg class.

    Components are taken per foreground class (full connectivity). ``round(fraction *
    n_components)`` of them are picked uniformly without replacement; each gets a class
    drawn uniformly from the other foreground classes present. Shapes are unchanged.
    With fewer than two foreground classes nothing can be swapped (info["n_swapped"] 0).
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    fraction = check_range("classswap fraction", fraction, 0.0, 1.0)
    classes = fg_classes(label)
    out = label.copy()
    swaps = []
    n_total = 0
    if len(classes) >= 2:
        gid = np.zeros(label.shape, dtype=np.int64)
        comp_class = [BACKGROUND]  # gid 0 = background / unlabelled
        st = full_structure(label.ndim)
        for k in classes:
            lab, n = ndimage.label(label == k, structure=st)
            gid[lab > 0] = lab[lab > 0] + len(comp_class) - 1
            comp_class.extend([k] * n)
        comp_class = np.asarray(comp_class, dtype=np.int64)
        n_total = comp_class.size - 1
        n_swap = int(np.floor(fraction * n_total + 0.5))
        lut = comp_class.copy()
        if n_swap:
            picked = np.sort(rng.choice(np.arange(1, n_total + 1), size=n_swap, replace=False))
            cls = np.asarray(classes)
            for g in picked:
                others = cls[cls != comp_class[g]]
                lut[g] = others[rng.integers(others.size)]
                swaps.append({"component": int(g), "from": int(comp_class[g]), "to": int(lut[g])})
            m = gid > 0
            out[m] = lut[gid[m]].astype(label.dtype)
    info = base_info(
        "classswap", spacing, fraction=fraction, n_components=int(n_total),
        n_swapped=len(swaps), swaps=swaps,
    )
    return finish(out, src), info


def flip(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    rate: float = 0.1,
) -> tuple[np.ndarray, dict]:
    """Flip each pixel independently with probability ``rate`` to another present class.

    The new class is uniform over the other classes present in the label (background
    included), so the changed fraction equals ``rate`` in expectation. A label with a
    single class cannot flip.
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    rate = check_range("flip rate", rate, 0.0, 1.0, hi_open=True)
    present, inv = np.unique(label, return_inverse=True)
    inv = inv.reshape(label.shape)
    out = label.copy()
    n_flipped = 0
    if present.size >= 2 and rate > 0:
        hit = np.flatnonzero(rng.random(label.shape) < rate)
        step = rng.integers(1, present.size, size=hit.size)
        new_idx = (inv.reshape(-1)[hit] + step) % present.size
        out.reshape(-1)[hit] = present[new_idx]
        n_flipped = int(hit.size)
    info = base_info(
        "flip", spacing, rate=rate, classes=[int(v) for v in present], changed_voxels=n_flipped
    )
    return finish(out, src), info
