"""NRRD and other ITK formats through SimpleITK, an optional extra (``pip install noisyseg[itk]``).

Arrays come in (X, Y[, Z]) order (vector images (X, Y, Z, C)) and the affine is in RAS, as
for NIfTI, so that labels written from them line up with the image in ITK-SNAP / 3D Slicer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError
from .files import Volume, atomic_path
from .metaimage import _LPS_TO_RAS, metaimage_affine


def _sitk(path: Path):
    try:
        import SimpleITK as sitk
    except ImportError:
        raise DataError(f"{path}: reading or writing this format needs SimpleITK: "
                        "pip install 'noisyseg[itk]'") from None
    return sitk


def read_itk(path: Path | str):
    """Read an image with SimpleITK; returns a :class:`noisyseg.io.Volume`."""
    path = Path(path)
    sitk = _sitk(path)
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)  # (Z, Y, X[, C])
    n = img.GetDimension()
    arr = np.moveaxis(arr, list(range(n)), list(range(n))[::-1])  # (X, Y, Z[, C])
    spacing = tuple(float(s) for s in img.GetSpacing())
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(n, n)
    affine = metaimage_affine(spacing, direction, tuple(img.GetOrigin()))
    return Volume(np.asarray(arr), spacing[:3], affine, path)


def write_itk(path: Path | str, array: np.ndarray, *, affine: np.ndarray | None = None,
              spacing: tuple[float, ...] | None = None) -> Path:
    """Write `array` (X, Y[, Z]) with SimpleITK (format from the file name), keeping the RAS
    `affine` (converted to ITK's LPS origin, direction and spacing); atomically."""
    path = Path(path)
    sitk = _sitk(path)
    arr = np.asarray(array)
    n = arr.ndim
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.T))
    if affine is not None:
        lps = _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
        m = lps[:n, :n]
        sp = np.linalg.norm(m, axis=0)
        if np.all(sp > 0):
            img.SetDirection(tuple((m / sp).ravel()))
            img.SetSpacing(tuple(float(s) for s in sp))
        img.SetOrigin(tuple(float(o) for o in lps[:n, 3]))
    if spacing is not None:
        img.SetSpacing(tuple(float(s) for s in tuple(spacing)[:n]))
    with atomic_path(path) as tmp:  # the temporary name ends like `path`: SimpleITK picks the format from it
        sitk.WriteImage(img, str(tmp), True)
    return path
