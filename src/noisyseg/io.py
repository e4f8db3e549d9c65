"""Reading and writing image and label files (NIfTI, MetaImage, PNG/JPEG, h5) with one-line errors.

Every reader returns arrays in (x, y[, z]) order for NIfTI, MetaImage and h5 and (row, col)
for 2D images, plus the voxel spacing in millimetres and a 4x4 affine (identity-scaled for
formats that have none), so that outputs can keep the input's geometry.

MetaImage files (PROMISE12) are read and written by :mod:`noisyseg.metaimage`; NRRD and other
ITK formats by :mod:`noisyseg.itkio` (SimpleITK, the optional ``itk`` extra); the base types
(:class:`Volume`, suffixes, atomic writes) below all three are in :mod:`noisyseg.files` and
re-exported here. Labels are written in the narrowest dtype holding their values (:func:`label_dtype`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError
from .files import (  # noqa: F401  (re-exported: readers and writers import them from here)
    IMAGE2D_SUFFIXES,
    ITK_SUFFIXES,
    METAIMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    SUPPORTED_SUFFIXES,
    Volume,
    atomic_dir,
    atomic_path,
)
from .itkio import read_itk, write_itk
from .metaimage import read_metaimage, write_metaimage


def case_id(path: Path | str) -> str:
    """The case id of a file: its name without any supported extension."""
    name = Path(path).name
    for suf in SUPPORTED_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem


def label_file_name(case_id: str, image_path: Path | str, file_ending: str | None = None) -> str:
    """Name of a label map written for a case: <id><file_ending> when the dataset declares one
    (nnU-Net v2 ``file_ending``, e.g. ".nrrd"), else <id>.png when its image is a 2D image file
    (PNG, JPEG, ...), <id>.nii.gz otherwise (NIfTI, MetaImage, h5 volumes)."""
    if file_ending and file_ending.lower() in (".nii.gz", ".nii", ".png") + METAIMAGE_SUFFIXES + ITK_SUFFIXES:
        return f"{case_id}{file_ending}"
    return f"{case_id}.png" if str(image_path).lower().endswith(IMAGE2D_SUFFIXES) else f"{case_id}.nii.gz"


def file_kind(path: Path | str) -> str:
    """'nifti', 'metaimage', 'itk', 'image2d' or 'h5' from the file name; DataError for anything else."""
    name = str(path).lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(METAIMAGE_SUFFIXES):
        return "metaimage"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    if name.endswith(IMAGE2D_SUFFIXES):
        return "image2d"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    raise DataError(f"{path}: unsupported file type (expected NIfTI, MetaImage .mhd/.mha, NRRD, PNG/JPEG or h5)")


def list_case_files(folder: Path) -> list[Path]:
    """Supported image files of a folder, sorted by name, hidden files skipped.

    MetaImage data files (``.raw``, ``.zraw``) are not listed: their ``.mhd`` header is.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(SUPPORTED_SUFFIXES)
    )

def read_file(path: Path | str, *, h5_key: str | None = None) -> Volume:
    """Read a NIfTI, MetaImage, 2D image or h5 dataset; DataError naming the file on any failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    kind = file_kind(path)
    try:
        if kind == "nifti":
            import nibabel as nib

            img = nib.load(str(path))
            arr = np.asarray(img.dataobj)
            zooms = tuple(float(z) for z in img.header.get_zooms()[: min(arr.ndim, 3)])
            vol = Volume(arr, zooms, np.asarray(img.affine, dtype=np.float64), path)
        elif kind == "metaimage":
            vol = read_metaimage(path)
        elif kind == "itk":
            vol = read_itk(path)
        elif kind == "image2d":
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im)
            vol = Volume(arr, (1.0, 1.0), np.eye(4), path)
        else:
            import h5py

            with h5py.File(path, "r") as h5:
                if h5_key is None or h5_key not in h5:
                    raise DataError(f"{path}: h5 file has no dataset '{h5_key}' (has {sorted(h5.keys())})")
                arr = np.asarray(h5[h5_key])
            vol = Volume(arr, (1.0,) * arr.ndim, np.eye(4), path)
    except DataError:
        raise
    except Exception as exc:  # corrupt files raise many different types
        raise DataError(f"{path}: cannot read file ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if vol.array.size == 0:
        raise DataError(f"{path}: file holds an empty array")
    return vol


def label_dtype(label: np.ndarray, path: Path | str) -> np.dtype:
    """The narrowest dtype that holds every value of `label`: uint8 when the values fit, else
    uint16, else int32 (PNG: 8 or 16 bit only). DataError naming `path` for a negative or
    non-finite value, or one too large for the format: labels are written as their raw
    non-negative values (map ``IGNORE_INDEX`` to the dataset's ignore value first)."""
    arr = np.asarray(label)
    if arr.dtype == bool or arr.size == 0:
        return np.dtype(np.uint8)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: label map holds a non-finite value (NaN or inf)")
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        raise DataError(f"{path}: label value {lo} is negative (label files hold non-negative values; "
                        "ignored pixels are written as the dataset's ignore value)")
    png = file_kind(path) == "image2d"
    for dtype in (np.uint8, np.uint16) if png else (np.uint8, np.uint16, np.int32):
        if hi <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise DataError(f"{path}: label value {hi} is too large for a {'PNG' if png else 'label'} file "
                    f"(at most {65535 if png else np.iinfo(np.int32).max})")


def write_label(path: Path | str, label: np.ndarray, *, affine: np.ndarray | None = None,
                spacing: tuple[float, ...] | None = None) -> Path:
    """Write a label map as NIfTI, MetaImage, ITK, h5 (keeping `affine`) or PNG by the file name,
    atomically, in the narrowest dtype holding its values (:func:`label_dtype`: uint8 when
    they fit, else uint16 (16-bit PNG), else int32)."""
    path = Path(path)
    kind = file_kind(path)
    label = np.asarray(label)
    label = label.astype(label_dtype(label, path))
    if kind == "metaimage":
        return write_metaimage(path, label, affine=affine, spacing=spacing)
    if kind == "itk":
        return write_itk(path, label, affine=affine, spacing=spacing)
    with atomic_path(path) as tmp:
        if kind == "nifti":
            import nibabel as nib

            if affine is None:
                affine = np.diag(list(spacing or (1.0,) * 3)[:3] + [1.0])
            img = nib.Nifti1Image(label, affine)
            if spacing is not None:
                img.header.set_zooms(tuple(spacing)[: label.ndim])
            nib.save(img, str(tmp))
        elif kind == "image2d":
            from PIL import Image

            Image.fromarray(label).save(tmp, format="PNG")
        else:
            import h5py

            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("label", data=label, compression="gzip")
    return path


def write_image(path: Path | str, image: np.ndarray, *, affine: np.ndarray | None = None) -> Path:
    """Write an intensity image as NIfTI or MetaImage (float32, keeping `affine`) or 8-bit PNG, atomically."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "metaimage":
        return write_metaimage(path, np.asarray(image, dtype=np.float32), affine=affine)
    if kind == "itk":
        return write_itk(path, np.asarray(image, dtype=np.float32), affine=affine)
    with atomic_path(path) as tmp:
        if kind == "nifti":
            import nibabel as nib

            nib.save(nib.Nifti1Image(np.asarray(image, dtype=np.float32),
                                     np.eye(4) if affine is None else affine), str(tmp))
        elif kind == "image2d":
            from PIL import Image

            arr = np.asarray(image)
            if arr.dtype != np.uint8:
                lo, hi = float(np.min(arr)), float(np.max(arr))
                arr = ((arr - lo) / max(hi - lo, 1e-8) * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(tmp, format="PNG")
        else:
            raise DataError(f"{path}: writing images as h5 is not supported")
    return path
