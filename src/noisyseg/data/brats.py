"""BraTS 2021 case folders.

    <root>/BraTS2021_00000/BraTS2021_00000_flair.nii.gz
                           BraTS2021_00000_t1.nii.gz
                           BraTS2021_00000_t1ce.nii.gz
                           BraTS2021_00000_t2.nii.gz
                           BraTS2021_00000_seg.nii.gz        (absent: unlabelled -> test)
                           BraTS2021_00000_seg_clean.nii.gz  (optional: known clean label)

Image channels in the order FLAIR, T1, T1ce, T2, each z-scored over the brain (non-zero
voxels). Label values 0/1/2/4 (background, necrotic core, edema, enhancing tumour) map to
class indices 0..3; the evaluation regions WT/TC/ET are given in class indices.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import read_file
from .case import (
    Case,
    CaseRef,
    Dataset,
    Layout,
    check_finite,
    check_same_shape,
    map_labels,
    normalize_intensity,
    read_case_list,
    resolve_trusted_ids,
)

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
BRATS_LABEL_VALUES = [0, 1, 2, 4]
BRATS_CLASS_NAMES = ["background", "necrotic tumour core (NCR)", "peritumoral edema (ED)",
                     "enhancing tumour (ET)"]
BRATS_REGIONS = {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
_SUFFIXES = BRATS_MODALITIES + ("seg",)


def _find(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def is_brats_case(folder: Path) -> bool:
    """A folder named X holding at least one X_<flair|t1|t1ce|t2|seg>.nii[.gz] file."""
    return folder.is_dir() and any(_find(folder, f"{folder.name}_{s}") for s in _SUFFIXES)


def _load_brats_case(folder: Path, with_clean: bool) -> Case:
    cid = folder.name
    chans = []
    first: Path | None = None
    spacing: tuple[float, ...] = ()
    affine = np.eye(4)
    for mod in BRATS_MODALITIES:
        p = _find(folder, f"{cid}_{mod}")
        if p is None:
            raise DataError(f"{folder / f'{cid}_{mod}.nii.gz'}: file not found (modality '{mod}' of case {cid})")
        vol = read_file(p)
        if vol.array.ndim != 3:
            raise DataError(f"{p}: image has shape {vol.array.shape}; expected (X, Y, Z)")
        if first is None:
            first, spacing, affine = p, tuple(vol.spacing[:3]), vol.affine
        elif vol.array.shape != chans[0].shape:
            raise DataError(f"{p}: shape {vol.array.shape} differs from {first.name} shape {chans[0].shape}")
        if vol.array.dtype.kind == "f":
            check_finite(vol.array, p)
        chans.append(normalize_intensity(vol.array, "MRI"))
    assert first is not None
    image = np.stack(chans)
    label = clean = None
    seg = _find(folder, f"{cid}_seg")
    if seg is not None:
        lab = read_file(seg).array
        check_same_shape(image.shape[1:], lab.shape, first, seg)
        label = map_labels(lab, BRATS_LABEL_VALUES, seg)
    if with_clean:
        cp = _find(folder, f"{cid}_seg_clean") or folder / f"{cid}_seg_clean.nii.gz"
        cl = read_file(cp).array
        check_same_shape(image.shape[1:], cl.shape, first, cp)
        clean = map_labels(cl, BRATS_LABEL_VALUES, cp)
    return Case(id=cid, image=image, label=label, spacing=spacing, affine=affine, image_path=first,
                clean_label=clean)


def read_brats(root: Path | str, *, clean_cases_file: Path | str | None = None) -> Dataset:
    """Open a folder of BraTS 2021 case folders.

    Args:
        root: the folder holding BraTS2021_XXXXX/ case folders.
        clean_cases_file: optional text file, one trusted training case id per line.
    Returns:
        a Dataset: train = cases with a _seg file, test = cases without (label None).
    Raises:
        DataError: no case folders, unknown trusted ids. A missing modality raises when
            the case is loaded, naming the missing file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    cases = sorted(p for p in root.iterdir() if not p.name.startswith(".") and is_brats_case(p))
    if not cases:
        raise DataError(f"{root}: no BraTS case folders (<ID>/<ID>_flair.nii.gz, ...)")
    labelled = [c for c in cases if _find(c, f"{c.name}_seg") is not None]
    unlabelled = [c for c in cases if c not in labelled]
    has_clean = any(_find(c, f"{c.name}_seg_clean") is not None for c in labelled)
    train = [CaseRef(id=c.name, path=c, loader=partial(_load_brats_case, c, has_clean)) for c in labelled]
    test = [CaseRef(id=c.name, path=c, loader=partial(_load_brats_case, c, False)) for c in unlabelled]
    trusted: list[str] = []
    if clean_cases_file is not None:
        trusted = resolve_trusted_ids(read_case_list(clean_cases_file), [c.name for c in labelled],
                                      clean_cases_file)
    return Dataset(root=root, layout="brats", spatial_dims=3, class_names=list(BRATS_CLASS_NAMES),
                   label_values=list(BRATS_LABEL_VALUES), modalities=["FLAIR", "T1", "T1ce", "T2"],
                   train=train, test=test, trusted_ids=trusted,
                   regions={k: list(v) for k, v in BRATS_REGIONS.items()}, has_clean_labels=has_clean)


def is_brats_layout(root: Path) -> bool:
    """A folder holding at least one BraTS case folder (:func:`is_brats_case`)."""
    return any(is_brats_case(p) for p in root.iterdir() if not p.name.startswith("."))


LAYOUT = Layout("brats", is_brats_layout, read_brats, "BraTS case folders")
