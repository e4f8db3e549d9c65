"""Writers for tiny files in each community format, shared by the test_data_*.py reader tests.

Imported as a plain sibling module (pytest puts this folder on sys.path), kept out of
conftest.py so that other test modules in this folder stay independent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

affine = np.array([[1.5, 0, 0, -10.0], [0, 0.8, 0, 5.0], [0, 0, 2.5, 1.0], [0, 0, 0, 1]])


def nifti(path: Path, arr: np.ndarray, affine: np.ndarray = affine) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(arr), affine), str(path))
    return path


def png(path: Path, arr: np.ndarray, fmt: str = "PNG") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path, format=fmt)
    return path


def h5(path: Path, **datasets) -> Path:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    attrs = datasets.pop("attrs", {})
    with h5py.File(path, "w") as h5:
        for k, v in datasets.items():
            h5.create_dataset(k, data=v)
        for k, v in attrs.items():
            h5.attrs[k] = v
    return path


def garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image file \x00\x01\x02" * 10)
    return path


def json_file(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 20, size=shape).astype(np.float32)


def label(shape, value=1) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.uint8)
    lab[tuple(slice(1, max(2, s // 2)) for s in shape)] = value
    return lab
