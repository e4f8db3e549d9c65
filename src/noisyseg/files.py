"""Base types of file input/output, below every reader and writer: the supported suffixes,
:class:`Volume` (an array with its geometry) and atomic writes (:func:`atomic_path`,
:func:`atomic_dir`). :mod:`noisyseg.metaimage`, :mod:`noisyseg.itkio` and :mod:`noisyseg.io`
build on it; ``noisyseg.io`` re-exports every name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
METAIMAGE_SUFFIXES = (".mhd", ".mha")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".gipl", ".gipl.gz")  # through SimpleITK (noisyseg[itk])
SUPPORTED_SUFFIXES = NIFTI_SUFFIXES + IMAGE2D_SUFFIXES + METAIMAGE_SUFFIXES + ITK_SUFFIXES + (".h5", ".hdf5")



@dataclass
class Volume:
    """An array read from a file with its geometry.

    Attributes:
        array: the data; (X, Y[, Z]) for NIfTI/MetaImage/h5, (H, W) or (H, W, 3) for 2D
            images, and (X, Y, Z, C) for multi-channel NIfTI.
        spacing: voxel size in mm per spatial axis.
        affine: 4x4 voxel-to-world matrix: NIfTI's own, MetaImage's converted to RAS,
            or diag(spacing) otherwise.
        path: the file it came from.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    path: Path


@contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o644)  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(out_dir: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder; move it onto `out_dir` only on success.

    Refuses (DataError) a non-empty `out_dir` unless `overwrite`; on any failure the
    temporary folder is removed and `out_dir` is left as it was.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise DataError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise DataError(f"{out_dir}: folder exists and is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    try:
        yield tmp
        for path in tmp.rglob("*"):  # private modes (mkstemp/mkdtemp) become ordinary ones
            if path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1):
                continue  # a link to someone else's file (e.g. a dataset copy by hard links): not ours
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out_dir.exists():
            old = tmp.with_name(tmp.name[: -len(".partial")] + ".old")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
