"""Embedded demo datasets, written in the Medical Segmentation Decathlon layout.

No download is possible, so the demos are built locally:

* :func:`write_mni_demo`: a 2D three-class brain-tissue task (background, grey matter,
  white matter) made of axial slices of the MNI152 ICBM 2009a template that the
  installed ``nilearn`` package ships, each slice lightly transformed (rotation,
  scale, shift, gamma and bias field).  See ``NOTICE_MNI152.txt``.
* :func:`write_phantom_demo`: a 3D two-class task of procedural phantoms
  (:func:`noisyseg.data.phantoms.make_phantom`).

Both are deterministic for a given seed (byte-identical files), are built in a
temporary sibling folder that is renamed into place only when complete, and refuse
to replace a non-empty folder unless ``overwrite=True``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import DataError
from ..io import atomic_dir, write_image, write_label
from .phantoms import make_phantom

__all__ = [
    "MNI_CLASS_NAMES",
    "NOTICE_NAME",
    "load_mni_template",
    "mni_template_paths",
    "select_slices",
    "tissue_label",
    "write_mni_demo",
    "write_phantom_demo",
]

MNI_CLASS_NAMES = ("background", "grey matter", "white matter")
NOTICE_NAME = "NOTICE_MNI152.txt"
_MNI_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


# --------------------------------------------------------------------------- template


def mni_template_paths() -> dict[str, Path]:
    """Paths of the T1, GM and WM template files inside the installed nilearn package.

    Returns:
        {'t1': Path, 'gm': Path, 'wm': Path}
    Raises:
        DataError: nilearn is not installed or lacks the files.
    """
    try:
        root = resources.files("nilearn.datasets.data")
    except ModuleNotFoundError as exc:
        raise DataError("the MNI demo needs the 'nilearn' package (pip install nilearn)") from exc
    paths = {}
    for key in ("t1", "gm", "wm"):
        path = Path(str(root / _MNI_FILE.format(key)))
        if not path.is_file():
            raise DataError(f"{path}: MNI152 template file missing from the nilearn package")
        paths[key] = path
    return paths


@functools.lru_cache(maxsize=1)
def _load_raw() -> tuple[tuple[str, np.ndarray], ...]:
    """The three uint8 template volumes, read once per process (about 26 MB), read-only."""
    import nibabel as nib

    out = []
    for key, path in mni_template_paths().items():
        arr = np.asarray(nib.load(str(path)).dataobj, dtype=np.uint8)
        arr.setflags(write=False)
        out.append((key, arr))
    return tuple(out)


def load_mni_template() -> dict[str, np.ndarray]:
    """The T1 image (uint8, read-only) and GM/WM probability maps (float32 in 0..1),
    all (197, 233, 189) in the template's (x, y, z) voxel order at 1 mm."""
    return {key: arr if key == "t1" else arr.astype(np.float32) / np.float32(255.0)
            for key, arr in _load_raw()}


def tissue_label(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """Tissue classes from probability maps: argmax over (background, GM, WM), where a
    voxel is background whenever both GM and WM probabilities are below 0.5.

    Returns:
        uint8 array: 0 background, 1 grey matter, 2 white matter.
    """
    label = np.where(wm > gm, 2, 1).astype(np.uint8)
    label[np.maximum(gm, wm) < 0.5] = 0
    return label


def _brain_mask(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    return (gm + wm) >= 0.5


def select_slices(brain_mask: np.ndarray, n: int) -> np.ndarray:
    """`n` distinct axial (z) indices spread evenly over the middle third of the brain's
    z extent, at least 2 apart so that no two chosen slices are adjacent.  The range is
    widened symmetrically (up to the whole brain) when the middle third is too short.

    Returns:
        int array of n increasing slice indices.
    """
    zs = np.flatnonzero(brain_mask.any(axis=(0, 1)))
    if zs.size == 0:
        raise DataError("MNI152 template: empty brain mask")
    zmin, zmax = int(zs[0]), int(zs[-1])
    extent = zmax - zmin + 1
    lo, hi = zmin + extent // 3, zmin + (2 * extent) // 3
    while hi - lo < 2 * (n - 1) and (lo > zmin or hi < zmax):
        lo, hi = max(lo - 1, zmin), min(hi + 1, zmax)
    if hi - lo < 2 * (n - 1):
        raise ValueError(f"cannot pick {n} non-adjacent slices from the template (at most "
                         f"{(zmax - zmin) // 2 + 1})")
    if n == 1:
        return np.array([(lo + hi) // 2])
    z = np.floor(np.linspace(lo, hi, n) + 0.5).astype(int)
    assert np.all(np.diff(z) >= 2)
    return z


def _transform_slice(t1: np.ndarray, label: np.ndarray, centre: np.ndarray, pix: float,
                     size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resample one (x, y) slice to `size` with a random mild affine and intensity change.

    The same geometric transform is applied to the image (linear) and the label
    (nearest neighbour).  Returns (uint8 image, uint8 label).
    """
    angle = np.deg2rad(rng.uniform(-10.0, 10.0))
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-6.0, 6.0, size=2)  # mm
    cos, sin = np.cos(angle), np.sin(angle)
    # output pixel o -> input voxel: centre + shift + R(angle) / scale * pix * (o - mid)
    matrix = np.array([[cos, -sin], [sin, cos]]) * (pix / scale)
    mid = (np.asarray(size, dtype=np.float64) - 1) / 2
    offset = centre + shift - matrix @ mid
    smoothed = ndimage.gaussian_filter(t1.astype(np.float32) / 255.0,
                                       sigma=max(0.0, 0.5 * (pix / scale - 1)))
    img = ndimage.affine_transform(smoothed, matrix, offset, output_shape=size, order=1,
                                   mode="constant", cval=0.0)
    lab = ndimage.affine_transform(label, matrix, offset, output_shape=size, order=0,
                                   mode="constant", cval=0)

    # intensity: gamma, smooth multiplicative bias, faint noise
    gamma = float(np.exp(rng.uniform(-0.2, 0.2)))
    u = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in size], indexing="ij"))
    log_bias = (rng.uniform(-1, 1) * u[0] + rng.uniform(-1, 1) * u[1]
                + 0.5 * rng.uniform(-1, 1) * u[0] * u[1] + 0.5 * rng.uniform(-1, 1) * u[0] ** 2
                + 0.5 * rng.uniform(-1, 1) * u[1] ** 2)
    log_bias *= rng.uniform(0.05, 0.15) / max(float(np.abs(log_bias).max()), 1e-6)
    img = np.clip(img, 0.0, 1.0) ** gamma * np.exp(log_bias)
    img = img + rng.uniform(0.005, 0.02) * rng.standard_normal(size)
    img8 = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return img8, lab.astype(np.uint8)


# --------------------------------------------------------------------------- writing


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _check_counts(n_train: int, n_test: int, min_train: int) -> None:
    if n_train < min_train or n_test < 0:
        raise ValueError(f"need n_train >= {min_train} and n_test >= 0, got {n_train}, {n_test}")


def write_mni_demo(out_dir: Path | str, *, n_train: int = 16, n_test: int = 6,
                   size: tuple[int, int] = (96, 112), seed: int = 0,
                   overwrite: bool = False) -> Path:
    """Write the 2D MNI152 brain-tissue demo dataset in the Decathlon layout.

    Layout: ``imagesTr/``, ``labelsTr/``, ``imagesTs/``, ``labelsTs/`` with 8-bit PNGs
    (labels 0 background, 1 grey matter, 2 white matter), ``dataset.json`` (MSD v1
    style plus ``clean_cases``: the first 3 training ids, and ``source_slices``: the
    template z index of each case) and ``NOTICE_MNI152.txt``.

    Each case is a distinct axial slice of the template from the middle third of the
    brain (no two chosen slices adjacent, train and test disjoint), with a random
    rotation (+-10 deg), scale (0.9-1.1), shift (+-6 mm), gamma and bias field applied
    alike to image and label.  PNG rows follow the template's x (left-right) axis and
    columns its y (posterior-anterior) axis; the field of view covers the brain with a
    margin at about 1.7 mm per pixel for the default size.

    Args:
        out_dir: folder to create.
        n_train, n_test: number of training and test cases (case ids mni_000, ...,
            training first).
        size: (rows, cols) of every PNG.
        seed: all randomness (split, case order, transforms) comes from this seed.
        overwrite: replace an existing non-empty `out_dir`.
    Returns:
        the dataset folder.
    """
    _check_counts(n_train, n_test, 1)
    size = (int(size[0]), int(size[1]))
    if min(size) < 8:
        raise ValueError(f"size must be at least 8x8, got {size}")
    tpl = load_mni_template()
    gm, wm = tpl["gm"], tpl["wm"]
    brain = _brain_mask(gm, wm)
    n = n_train + n_test
    slices = select_slices(brain, n)
    rng = np.random.default_rng(seed)

    # test slices spread evenly over the range, the rest train in random order
    test_pos = [int((k + 0.5) * n / n_test) for k in range(n_test)]  # distinct: n / n_test >= 1
    test_z = [int(slices[i]) for i in test_pos]
    train_z = [int(z) for z in slices if int(z) not in test_z]
    train_z = [train_z[i] for i in rng.permutation(len(train_z))]

    # field of view: the brain's in-plane bounding box + 10 % margin, aspect of `size`
    xy = np.argwhere(brain.any(axis=2))
    bb_lo, bb_hi = xy.min(axis=0), xy.max(axis=0)
    centre = (bb_lo + bb_hi) / 2.0
    pix = 1.1 * max((bb_hi[0] - bb_lo[0] + 1) / size[0], (bb_hi[1] - bb_lo[1] + 1) / size[1])

    ids = [f"mni_{i:03d}" for i in range(n)]
    case_rngs = rng.spawn(n)
    notice = resources.files("noisyseg.data").joinpath(NOTICE_NAME).read_bytes()
    with atomic_dir(out_dir, overwrite) as tmp:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (tmp / sub).mkdir()
        for i, (cid, z) in enumerate(zip(ids, train_z + test_z)):
            split = "Tr" if i < n_train else "Ts"
            label = tissue_label(gm[:, :, z], wm[:, :, z])
            img, lab = _transform_slice(tpl["t1"][:, :, z], label, centre, pix, size, case_rngs[i])
            write_image(tmp / f"images{split}" / f"{cid}.png", img)
            write_label(tmp / f"labels{split}" / f"{cid}.png", lab)
        _write_json(tmp / "dataset.json", {
            "name": "MNI152-2D-tissue-demo",
            "description": "Axial slices of the MNI152 ICBM 2009a nonlinear symmetric template "
                           "with grey/white matter labels, lightly transformed (noisyseg demo).",
            "reference": "McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University",
            "licence": "see NOTICE_MNI152.txt",
            "release": "1.0",
            "tensorImageSize": "2D",
            "modality": {"0": "MRI"},
            "labels": {str(k): name for k, name in enumerate(MNI_CLASS_NAMES)},
            "numTraining": n_train,
            "numTest": n_test,
            "training": [{"image": f"./imagesTr/{c}.png", "label": f"./labelsTr/{c}.png"}
                         for c in ids[:n_train]],
            "test": [f"./imagesTs/{c}.png" for c in ids[n_train:]],
            "clean_cases": ids[: min(3, n_train)],
            "source_slices": dict(zip(ids, train_z + test_z)),
        })
        (tmp / NOTICE_NAME).write_bytes(notice)
    return Path(out_dir)


def write_phantom_demo(out_dir: Path | str, *, n_train: int = 8, n_test: int = 4,
                       shape: tuple[int, int, int] = (48, 48, 32), seed: int = 0,
                       spacing: tuple[float, float, float] = (1.0, 1.0, 1.5),
                       overwrite: bool = False) -> Path:
    """Write the 3D phantom demo dataset (2 classes) in the Decathlon layout.

    Layout: ``imagesTr/``, ``labelsTr/``, ``imagesTs/``, ``labelsTs/`` with ``.nii.gz``
    files (float32 images, uint8 labels, affine diag(spacing)), ``dataset.json`` (MSD
    v1 style plus ``clean_cases``: the first 2 training ids).  Case ids phantom_000, ...

    Args:
        out_dir: folder to create.
        n_train, n_test: number of training and test cases.
        shape: spatial shape of every volume.
        seed: all randomness comes from this seed.
        spacing: voxel size in mm written into the affine and header.
        overwrite: replace an existing non-empty `out_dir`.
    Returns:
        the dataset folder.
    """
    _check_counts(n_train, n_test, 1)
    n = n_train + n_test
    ids = [f"phantom_{i:03d}" for i in range(n)]
    case_rngs = np.random.default_rng(seed).spawn(n)
    spacing = tuple(float(s) for s in spacing)
    affine = np.diag(list(spacing) + [1.0])
    with atomic_dir(out_dir, overwrite) as tmp:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (tmp / sub).mkdir()
        for i, cid in enumerate(ids):
            split = "Tr" if i < n_train else "Ts"
            image, label = make_phantom(tuple(shape), case_rngs[i], num_classes=2)
            write_image(tmp / f"images{split}" / f"{cid}.nii.gz", image, affine=affine)
            write_label(tmp / f"labels{split}" / f"{cid}.nii.gz", label, affine=affine, spacing=spacing)
        _write_json(tmp / "dataset.json", {
            "name": "Phantom-3D-demo",
            "description": "Procedural organ-like phantoms with texture, bias field and noise (noisyseg demo).",
            "reference": "generated by noisyseg.data.phantoms.make_phantom",
            "licence": "Apache-2.0",
            "release": "1.0",
            "tensorImageSize": "3D",
            "modality": {"0": "MRI"},
            "labels": {"0": "background", "1": "organ"},
            "numTraining": n_train,
            "numTest": n_test,
            "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                         for c in ids[:n_train]],
            "test": [f"./imagesTs/{c}.nii.gz" for c in ids[n_train:]],
            "clean_cases": ids[: min(2, n_train)],
        })
    return Path(out_dir)
