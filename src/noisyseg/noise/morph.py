"""MT-Noise: morphological label noise (dilation or erosion with a cubic element).

The MTCL recipe used by the 3D benchmarks (docs/reference.md §3): each corrupted
training case is dilated or eroded (1/2 each) with a cubic structuring element whose
side is drawn from U{3..15}; a few cases stay clean (LA: 8 of 80), chosen with
:func:`choose_clean_cases`.

Multi-class labels [choice]: the operation acts on each class's border with the
background, which is the per-class dilation/erosion made consistent when classes
touch. Dilation grows every foreground class into background pixels (a background
voxel within the element of several classes takes the nearest one); erosion grows the
background into the foreground (a foreground voxel within the element of a background
voxel becomes background). Borders between two foreground classes stay where they are,
so nested structures (BraTS' tumour regions) never open gaps and no new values appear.
For a binary mask this is exactly binary dilation/erosion. The image border does not
erode (the structure may continue outside the field of view).

Speed: a flat cube is separable, so the morphology is ``scipy.ndimage.maximum_filter``
(three 1D passes) on the foreground's bounding box grown by the element's reach,
instead of ``binary_dilation`` with a 15^3 element on the whole volume.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ._common import (
    BACKGROUND,
    base_info,
    bbox_slices,
    check_inputs,
    check_rng,
    finish,
)

OPS = ("dilate", "erode")


def _element_sizes(size: int, shape_ndim: int, spacing, physical: bool) -> tuple[int, ...]:
    if not physical or spacing is None:
        return (int(size),) * shape_ndim
    smin = min(spacing)
    return tuple(max(1, int(round(size * smin / s))) for s in spacing)


def morph(
    label: np.ndarray,
    *,
    spacing: tuple[float, ...] | None = None,
    rng: np.random.Generator,
    op: str | None = None,
    size: int | None = None,
    size_range: tuple[int, int] = (3, 15),
    physical: bool = False,
) -> tuple[np.ndarray, dict]:
    """Dilate or erode the label with a cubic (square in 2D) element.

    Args:
        label: integer label map, 2D or 3D.
        spacing: voxel size; only used when ``physical`` is True.
        rng: the random generator; two draws are always taken (op, then side).
        op: "dilate" or "erode"; None draws one with probability 1/2 each.
        size: side of the element in voxels; None draws from U{size_range}.
        size_range: inclusive (min, max) side, default (3, 15) as in MTCL.
        physical: if True and spacing is given, the element is a cube in mm whose
            side along the finest axis is ``size`` voxels (fewer voxels along coarser
            axes). Default False: a cube in voxels, as in the published protocol.

    Returns:
        (noisy label, info) with info {"protocol", "op", "size", "element", ...}.
    """
    src = label
    label, rng, spacing = check_inputs(label, rng, spacing)
    lo, hi = (int(v) for v in size_range)
    if lo < 1 or hi < lo:
        raise ConfigError(f"morph size_range must be 1 <= min <= max, got {size_range!r}")
    draw_dilate = bool(rng.random() < 0.5)
    draw_size = int(rng.integers(lo, hi + 1))
    if op is None:
        op = "dilate" if draw_dilate else "erode"
    if op not in OPS:
        raise ConfigError(f"morph op must be one of {', '.join(OPS)}, got {op!r}")
    if size is None:
        size = draw_size
    size = int(size)
    if size < 1:
        raise ConfigError(f"morph size must be >= 1, got {size}")
    sizes = _element_sizes(size, label.ndim, spacing, physical)

    out = label.copy()
    fg = label != BACKGROUND
    reach = tuple(s // 2 + 1 for s in sizes)
    sl = bbox_slices(fg, reach)
    changed = 0
    if sl is not None and size > 1:
        crop = label[sl]
        fgc = fg[sl]
        if op == "dilate":
            grown = ndimage.maximum_filter(fgc.view(np.uint8), size=sizes, mode="constant", cval=0)
            grown = grown.view(bool) & ~fgc
            if grown.any():
                classes = np.unique(crop[fgc])
                if classes.size == 1:
                    vals = classes[0]
                else:
                    idx = ndimage.distance_transform_edt(
                        ~fgc, return_distances=False, return_indices=True
                    )
                    vals = crop[tuple(ix[grown] for ix in idx)]
                oc = out[sl]
                oc[grown] = vals
                changed = int(grown.sum())
        else:
            bgc = ~fgc
            if bgc.any():
                near_bg = ndimage.maximum_filter(
                    bgc.view(np.uint8), size=sizes, mode="constant", cval=0
                ).view(bool)
                shrunk = fgc & near_bg
                out[sl][shrunk] = BACKGROUND
                changed = int(shrunk.sum())
    info = base_info(
        "morph", spacing, op=op, size=size, element=list(sizes), physical=bool(physical),
        changed_voxels=changed,
    )
    return finish(out, src), info


def choose_clean_cases(
    case_ids: Iterable[str],
    *,
    clean_fraction: float | None = None,
    n_clean: int | None = None,
    rng: np.random.Generator,
) -> set[str]:
    """Pick which cases keep their clean label (MTCL's LA recipe: 8 of 80).

    Give exactly one of ``clean_fraction`` (rounded to the nearest count) or
    ``n_clean``. The ids are sorted first, so the choice depends only on the set of
    ids and the rng, not on their order.
    """
    rng = check_rng(rng)
    ids = sorted({str(c) for c in case_ids})
    if (clean_fraction is None) == (n_clean is None):
        raise ConfigError("choose_clean_cases needs exactly one of clean_fraction or n_clean")
    if clean_fraction is not None:
        f = float(clean_fraction)
        if not 0.0 <= f <= 1.0:
            raise ConfigError(f"clean_fraction must be in [0, 1], got {clean_fraction!r}")
        n = int(np.floor(f * len(ids) + 0.5))
    else:
        n = int(n_clean)
        if not 0 <= n <= len(ids):
            raise ConfigError(
                f"n_clean must be in [0, {len(ids)}] (number of cases), got {n_clean!r}"
            )
    if n == 0:
        return set()
    pick = rng.choice(len(ids), size=n, replace=False)
    return {ids[i] for i in pick}
