"""PROMISE12 prostate MRI (MICCAI 2012 challenge), in the MetaImage files it is distributed as.

    <root>/CaseNN.mhd + CaseNN.raw                              T2-weighted MRI volume
    <root>/CaseNN_segmentation.mhd + CaseNN_segmentation.raw    mask: 0 background, 1 prostate
    <root>/TrainingData_Part1/, ..._Part2/, ...                 optional: the challenge's training
                                                                zips unpacked side by side
    <root>/test/ or TestData/ (or LiveChallengeData/)           optional: test images

A case with a mask beside it is a training case (Case00..Case49 in the challenge); a case
without one is an unlabelled test case. Cases in a test folder are test cases, labelled
if a mask is there too. The challenge's test cases reuse the names Case00..Case29, so a
test case may share its id with a training case (never with another of its own split).
``.mha`` files are accepted as well as ``.mhd``.

Images become one channel (T2), z-scored per case over the non-zero voxels like the other
MRI readers; masks become class indices 0/1 (any other value is an error). Spacing and
affine come from the MetaImage header (anisotropic, e.g. 0.625 x 0.625 x 3.6 mm; the
affine in RAS, see :func:`noisyseg.metaimage.metaimage_affine`).
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import case_id, file_kind, list_case_files, read_file
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

MASK_SUFFIX = "_segmentation"
LABEL_VALUES = [0, 1]
_PROMISE_NAME = re.compile(r"^case\d+(_segmentation)?\.(mhd|mha)$", re.IGNORECASE)


def _folders(root: Path) -> list[tuple[Path, bool]]:
    """The folders that may hold cases: (folder, is a test folder); root first."""
    out = [(root, False)]
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = sub.name.lower()
        if name.startswith("train"):
            out.append((sub, False))
        elif name.startswith(("test", "livechallenge")):
            out.append((sub, True))
    return out


def _metaimage_files(folder: Path) -> list[Path]:
    return [p for p in list_case_files(folder) if file_kind(p) == "metaimage"]


def is_promise12_layout(root: Path) -> bool:
    """True if `root` (or its training/test subfolders) holds MetaImage masks
    (``*_segmentation.mhd``) or PROMISE12-named cases (``CaseNN.mhd``)."""
    try:
        for folder, _ in _folders(root):
            for p in _metaimage_files(folder):
                if _PROMISE_NAME.match(p.name) or case_id(p).lower().endswith(MASK_SUFFIX):
                    return True
    except (OSError, DataError):
        return False
    return False


def _read_volume(path: Path, what: str) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    vol = read_file(path)
    if vol.array.ndim != 3:
        raise DataError(f"{path}: {what} has shape {vol.array.shape}; expected a 3D volume (X, Y, Z)")
    return vol.array, tuple(float(s) for s in vol.spacing[:3]), vol.affine


def _load_promise12_case(cid: str, image_path: Path, mask_path: Path | None) -> Case:
    """Read one case: image (1, X, Y, Z) float32 z-scored, label (X, Y, Z) int64 0/1 or None."""
    arr, spacing, affine = _read_volume(image_path, "image")
    if arr.dtype.kind == "f":
        check_finite(arr, image_path)
    image = normalize_intensity(arr, "T2")[None]
    label = None
    if mask_path is not None:
        lab, _, _ = _read_volume(mask_path, "mask")
        check_same_shape(arr.shape, lab.shape, image_path, mask_path)
        label = map_labels(lab, LABEL_VALUES, mask_path)
    return Case(id=cid, image=image, label=label, spacing=spacing, affine=affine, image_path=image_path)


def read_promise12(root: Path | str, *, clean_cases_file: Path | str | None = None) -> Dataset:
    """Open a PROMISE12 folder (CaseNN.mhd images, CaseNN_segmentation.mhd masks).

    Args:
        root: the folder holding the case files (and optional training/test subfolders).
        clean_cases_file: optional text file, one trusted training case id per line.
    Returns:
        a 3D Dataset, 1 channel (T2), classes background/prostate; train = cases with a
        mask, test = cases without one and the cases of test folders.
    Raises:
        DataError: no case files, a case found twice in one split, a mask without its
            image, unknown trusted ids. Unreadable files, label values other than 0/1 and
            image/mask shape mismatches raise when the case is loaded, naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    train: dict[str, CaseRef] = {}
    test: dict[str, CaseRef] = {}
    for folder, is_test in _folders(root):
        masks: dict[str, Path] = {}
        images: dict[str, Path] = {}
        for p in _metaimage_files(folder):  # CaseNN.mhd beside CaseNN.mha is one case twice
            cid = case_id(p)
            is_mask = cid.lower().endswith(MASK_SUFFIX)
            if not is_mask and MASK_SUFFIX in cid.lower():
                continue
            group, key = (masks, cid[: -len(MASK_SUFFIX)]) if is_mask else (images, cid)
            if key in group:
                raise DataError(f"{p}: case '{key}' found twice (also {group[key]})")
            group[key] = p
        for cid, mask in masks.items():
            if cid not in images:
                raise DataError(f"{mask}: mask without its image {cid}.mhd in {folder}")
        for cid, img in images.items():
            mask = masks.get(cid)
            split = test if (is_test or mask is None) else train
            if cid in split:
                raise DataError(f"{img}: case '{cid}' found twice (also {split[cid].path})")
            split[cid] = CaseRef(id=cid, path=img, loader=partial(_load_promise12_case, cid, img, mask))
    if not train and not test:
        raise DataError(f"{root}: no PROMISE12 case files (CaseNN.mhd with CaseNN_segmentation.mhd masks)")
    train_refs = [train[c] for c in sorted(train)]
    test_refs = [test[c] for c in sorted(test)]
    trusted: list[str] = []
    if clean_cases_file is not None:
        trusted = resolve_trusted_ids(read_case_list(clean_cases_file), [r.id for r in train_refs],
                                      clean_cases_file)
    return Dataset(root=root, layout="promise12", spatial_dims=3, class_names=["background", "prostate"],
                   label_values=list(LABEL_VALUES), modalities=["T2"], train=train_refs, test=test_refs,
                   trusted_ids=trusted, has_clean_labels=False)


LAYOUT = Layout("promise12", is_promise12_layout, read_promise12, "CaseNN.mhd + CaseNN_segmentation.mhd (PROMISE12)")
