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


MET_TYPES = {"u1": "MET_UCHAR", "i1": "MET_CHAR", "u2": "MET_USHORT", "i2": "MET_SHORT", "u4": "MET_UINT",
             "i4": "MET_INT", "f4": "MET_FLOAT", "f8": "MET_DOUBLE"}


def metaimage(path: Path, arr: np.ndarray, spacing=None, *, offset=None, direction=None, byteorder: str = "<",
              compress: bool = False, element_type: str | None = None, data_file: str | None = None,
              extra: dict | None = None) -> Path:
    """Write `arr` (X, Y[, Z]) as MetaImage the way ITK does (PROMISE12's format).

    `path` ``.mhd``: a header plus a data file beside it (``<name>.raw``, or ``.zraw``
    when compressed, or `data_file`); ``.mha``: one file, ``ElementDataFile = LOCAL``.
    Data is x fastest, in `byteorder` ('<' or '>'), zlib-compressed if `compress`.
    `direction` is (N, N) with column j the world (LPS) direction of axis j; it is written
    as TransformMatrix rows, as ITK writes it. `element_type` overrides the ElementType
    written; `extra` adds header keys before ElementDataFile.
    """
    import zlib

    arr = np.asarray(arr)
    n = arr.ndim
    spacing = (1.0,) * n if spacing is None else spacing
    offset = (0.0,) * n if offset is None else offset
    direction = np.eye(n) if direction is None else np.asarray(direction)
    body = np.ascontiguousarray(arr.T).astype(arr.dtype.newbyteorder(byteorder)).tobytes()
    if compress:
        body = zlib.compress(body)
    local = path.name.endswith(".mha")
    if data_file is None:
        data_file = "LOCAL" if local else path.name[:-4] + (".zraw" if compress else ".raw")

    def nums(v) -> str:
        return " ".join(repr(float(x)) for x in np.ravel(v))

    keys = {
        "ObjectType": "Image", "NDims": n, "BinaryData": "True",
        "BinaryDataByteOrderMSB": "True" if byteorder == ">" else "False",
        "CompressedData": "True" if compress else "False",
        **({"CompressedDataSize": len(body)} if compress else {}),
        "TransformMatrix": nums(direction.T), "Offset": nums(offset), "CenterOfRotation": nums([0] * n),
        "AnatomicalOrientation": "RAI", "ElementSpacing": nums(spacing),
        "DimSize": " ".join(str(s) for s in arr.shape),
        "ElementType": element_type or MET_TYPES[arr.dtype.str[1:]],
        **(extra or {}),
        "ElementDataFile": data_file,
    }
    header = "".join(f"{k} = {v}\n" for k, v in keys.items()).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    if data_file == "LOCAL":
        path.write_bytes(header + body)
    else:
        path.write_bytes(header)
        (path.parent / data_file).write_bytes(body)
    return path


def blob_case(shape=(24, 24, 16), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable 3D case: an ellipsoid label (uint8) and an image brighter inside it."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = np.array(shape) / 2 + rng.integers(-2, 3, 3)
    radii = np.array(shape) * np.array([0.3, 0.25, 0.25])
    lab = (sum(((g - ci) / r) ** 2 for g, ci, r in zip(grid, c, radii)) < 1).astype(np.uint8)
    img = (lab * 2.0 + rng.normal(0, 0.5, shape)).astype(np.float32)
    return img, lab


def la_dataset(root: Path, n_train: int = 6, n_test: int = 0, shape=(24, 24, 16), seed: int = 0) -> Path:
    """An LA folder in the community layout: "2018LA_Seg_Training Set/<ID>/mri_norm2.h5",
    train.list and (when n_test > 0) test.list."""
    ids = [f"LA{seed:02d}{i:02d}" for i in range(n_train + n_test)]
    for i, cid in enumerate(ids):
        img, lab = blob_case(shape, seed * 100 + i)
        h5(root / "2018LA_Seg_Training Set" / cid / "mri_norm2.h5", image=img, label=lab)
    (root / "train.list").write_text("\n".join(ids[:n_train]) + "\n")
    if n_test:
        (root / "test.list").write_text("\n".join(ids[n_train:]) + "\n")
    return root


OBLIQUE = np.array([[0.0, -1.2, 0.0, 30.0], [1.2, 0.0, 0.0, -12.0], [0.0, 0.0, 2.0, 4.0], [0, 0, 0, 1]])


def nnunet_v2_dataset(root: Path, n_train: int = 6, n_test: int = 2, shape=(16, 16, 8), seed: int = 0,
                      affine: np.ndarray = OBLIQUE) -> Path:
    """An nnU-Net v2 raw dataset: two channel files per case (case_0000, case_0001), labels
    {background 0, lesion 1, ignore 2}; in every label the first two z-slices are ignored."""
    rng = np.random.default_rng(seed)
    json_file(root / "dataset.json", {"channel_names": {"0": "T1", "1": "T2"},
                                      "labels": {"background": 0, "lesion": 1, "ignore": 2},
                                      "numTraining": n_train, "file_ending": ".nii.gz"})
    for i in range(n_train + n_test):
        folder, lab_folder = ("imagesTr", "labelsTr") if i < n_train else ("imagesTs", "labelsTs")
        lab = np.zeros(shape, np.uint8)
        c = rng.integers(5, shape[0] - 5, size=2)
        lab[c[0] - 3:c[0] + 3, c[1] - 3:c[1] + 3, 2:-1] = 1
        lab[:, :, :2] = 2
        fg = (lab == 1).astype(np.float32)
        nifti(root / folder / f"case{i:02d}_0000.nii.gz", 100 + 50 * fg + rng.normal(0, 5, shape).astype(np.float32),
              affine)
        nifti(root / folder / f"case{i:02d}_0001.nii.gz", 80 - 30 * fg + rng.normal(0, 5, shape).astype(np.float32),
              affine)
        nifti(root / lab_folder / f"case{i:02d}.nii.gz", lab, affine)
    return root
