"""ACDC cardiac cine MRI (Bernard et al., IEEE TMI 2018) in the two layouts it is distributed in.

The h5 form of the semi-supervised / noisy-label literature (SSL4MIS)::

    <root>/data/slices/<patientNNN_frameMM_slice_K>.h5   2D training slices (H, W)
    <root>/data/<patientNNN_frameMM>.h5                  3D volumes (slices, H, W)
    <root>/train_slices.list  train.list  val.list  test.list (or test_official.list)

Each file holds ``image`` (float32, min-max normalised per volume) and ``label`` (uint8:
0 background, 1 right-ventricle cavity, 2 myocardium, 3 left-ventricle cavity). The
training split is the listed slices (else the listed ``train.list`` volumes); ``val`` and
``test`` are the listed volumes found on disk. The form carries no spacing: distances
are in pixels (``Dataset.spacing_known`` is False) unless an h5 attribute ``spacing``
(x, y, z in mm) is present.

The original challenge distribution::

    <root>/[training/|testing/]patientNNN/patientNNN_frameMM.nii.gz (+ _gt.nii.gz, Info.cfg)

with the NIfTI's own spacing and affine; patients under ``testing/`` form the test split.
Images are min-max normalised per volume to [0, 1] as in the h5 form (modality ``MRI-minmax``,
which `predict` applies to plain-folder volumes too).

Arrays are returned in NIfTI axis order (x, y, z): the h5 arrays, stored (z, y, x), are
transposed, and a training slice is a volume of one slice (1, x, y, 1), so that 2D runs
(``Dataset.train_dims`` is 2) slice every volume along the last axis. Cases are grouped
by patient (``Dataset.groups``).
"""

from __future__ import annotations

import re
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import read_file
from .case import Case, CaseRef, Dataset, Layout, check_finite, check_same_shape, map_labels, \
    normalize_intensity, read_case_list, resolve_trusted_ids
from .h5cases import h5_info

CLASS_NAMES = ["background", "right ventricle", "myocardium", "left ventricle"]
LABEL_VALUES = [0, 1, 2, 3]
MODALITY = "MRI-minmax"
"""Cine MRI scaled to [0, 1] per volume (as the h5 form stores it), so that raw NIfTI volumes
given to `predict` in a plain folder are normalised the same way."""
SLICE_LIST = "train_slices.list"
VOLUME_LISTS = {"train": ("train.list",), "val": ("val.list",), "test": ("test.list", "test_official.list")}
_PATIENT = re.compile(r"^(patient\d+)")
_FRAME_FILE = re.compile(r"^(patient\d+)_frame(\d+)\.nii(\.gz)?$")


def patient_of(case_id: str) -> str:
    """The patient of an ACDC case id ('patient003_frame01_slice_5' -> 'patient003')."""
    m = _PATIENT.match(case_id)
    return m.group(1) if m else case_id


def is_acdc_h5_layout(root: Path) -> bool:
    """True for the h5 form: data/slices/ or data/<frame>.h5 volumes beside one of the lists."""
    data = root / "data"
    if not data.is_dir():
        return False
    if (data / "slices").is_dir() and (root / SLICE_LIST).is_file():
        return True
    lists = [n for names in VOLUME_LISTS.values() for n in names]
    return any((root / n).is_file() for n in lists) and any(data.glob("*.h5"))


def _patient_dirs(root: Path) -> list[tuple[Path, str]]:
    """(patient folder, split) of the original layout, under root or training/ and testing/."""
    out = []
    for sub, split in (("", "train"), ("training", "train"), ("testing", "test")):
        folder = root / sub if sub else root
        if folder.is_dir():
            out += [(p, split) for p in sorted(folder.iterdir()) if p.is_dir() and _PATIENT.fullmatch(p.name)]
    return out


def is_acdc_nifti_layout(root: Path) -> bool:
    """True for the original distribution: patientNNN/ folders holding patientNNN_frameMM.nii.gz."""
    return any(any(_FRAME_FILE.match(f.name) for f in p.iterdir()) for p, _ in _patient_dirs(root)[:3])


def _load_h5(cid: str, path: Path, labelled: bool) -> Case:
    keys, sp = h5_info(path)
    img = read_file(path, h5_key="image").array
    if img.ndim not in (2, 3):
        raise DataError(f"{path}: 'image' has shape {img.shape}; expected (H, W) or (slices, H, W)")
    if img.dtype.kind not in "fiub":
        raise DataError(f"{path}: 'image' has non-numeric type {img.dtype}")
    check_finite(img, path)
    to_xyz = (lambda a: a.T[..., None]) if img.ndim == 2 else (lambda a: a.transpose(2, 1, 0))
    label = None
    if labelled or "label" in keys:
        lab = read_file(path, h5_key="label").array
        check_same_shape(img.shape, lab.shape, path, path)
        label = np.ascontiguousarray(to_xyz(map_labels(lab, LABEL_VALUES, path)))
    spacing = sp or (1.0, 1.0, 1.0)
    image = np.ascontiguousarray(to_xyz(np.asarray(img, dtype=np.float32)))[None]
    return Case(id=cid, image=image, label=label, spacing=tuple(spacing),
                affine=np.diag([*spacing, 1.0]).astype(np.float64), image_path=path)


def _load_nifti(cid: str, image_path: Path, label_path: Path | None) -> Case:
    vol = read_file(image_path)
    img = np.asarray(vol.array)
    if img.ndim != 3:
        raise DataError(f"{image_path}: image has shape {img.shape}; expected a 3D frame (x, y, z)")
    check_finite(img, image_path)
    label = None
    if label_path is not None:
        lab = read_file(label_path).array
        check_same_shape(img.shape, lab.shape, image_path, label_path)
        label = map_labels(lab, LABEL_VALUES, label_path)
    return Case(id=cid, image=normalize_intensity(img, MODALITY)[None], label=label,
                spacing=tuple(float(s) for s in vol.spacing[:3]), affine=vol.affine, image_path=image_path)


def _listed(root: Path, names: tuple[str, ...], folder: Path, required: bool) -> tuple[list[tuple[str, Path]], Path | None]:
    """(id, file) of the first list among `names` whose ids are found in `folder`; ids that are
    not on disk are skipped (with a warning for a training list)."""
    lst = next((root / n for n in names if (root / n).is_file()), None)
    if lst is None:
        return [], None
    ids = list(dict.fromkeys(read_case_list(lst)))
    found = [(cid, folder / f"{cid}.h5") for cid in ids if (folder / f"{cid}.h5").is_file()]
    if required and len(found) < len(ids):
        warnings.warn(f"{lst}: {len(ids) - len(found)} listed case(s) not in {folder}, skipped", stacklevel=3)
    return found, lst


def read_acdc_h5(root: Path | str, *, clean_cases_file: Path | str | None = None) -> Dataset:
    """Open the ACDC h5 form (see the module docstring).

    Returns:
        a 3D Dataset (layout 'acdc_h5', train_dims 2) of slices (train) and volumes (val/test),
        grouped by patient.
    Raises:
        DataError: a listed training list with no case on disk, a case in two splits, unknown
            trusted names.
    """
    root = Path(root)
    data = root / "data"
    train, train_list = _listed(root, (SLICE_LIST,), data / "slices", required=True)
    if train_list is None:
        train, train_list = _listed(root, VOLUME_LISTS["train"], data, required=True)
    if train_list is not None and not train:
        raise DataError(f"{train_list}: none of the listed cases exists under {data}")
    val, _ = _listed(root, VOLUME_LISTS["val"], data, required=False)
    test, _ = _listed(root, VOLUME_LISTS["test"], data, required=False)
    _check_disjoint(root, {"train": train, "val": val, "test": test})
    first = (train + val + test)[:1]
    spacing_known = bool(first) and h5_info(first[0][1])[1] is not None

    def refs(items: list[tuple[str, Path]], labelled: bool) -> list[CaseRef]:
        return [CaseRef(id=cid, path=p, loader=partial(_load_h5, cid, p, labelled)) for cid, p in items]

    return _dataset(root, "acdc_h5", refs(train, True), refs(val, True), refs(test, False), clean_cases_file,
                    spacing_known)


def read_acdc_nifti(root: Path | str, *, clean_cases_file: Path | str | None = None) -> Dataset:
    """Open the original ACDC distribution (patient folders of NIfTI frames with ``_gt`` labels).

    Returns:
        a 3D Dataset (layout 'acdc', train_dims 2) of the frames that have a ``_gt`` label
        (test frames also without), grouped by patient, with the NIfTI spacing.
    """
    root = Path(root)
    splits: dict[str, list[CaseRef]] = {"train": [], "test": []}
    for folder, split in _patient_dirs(root):
        for f in sorted(folder.iterdir()):
            m = _FRAME_FILE.match(f.name)
            if not m:
                continue
            cid = f"{m.group(1)}_frame{m.group(2)}"
            gt = next((g for g in (folder / f"{cid}_gt.nii.gz", folder / f"{cid}_gt.nii") if g.is_file()), None)
            if gt is None and split == "train":
                continue  # the frames between end-diastole and end-systole have no label
            splits[split].append(CaseRef(id=cid, path=f, loader=partial(_load_nifti, cid, f, gt)))
    if not splits["train"] and not splits["test"]:
        raise DataError(f"{root}: ACDC patient folders hold no patientNNN_frameMM.nii.gz with a _gt label")
    return _dataset(root, "acdc", splits["train"], [], splits["test"], clean_cases_file, True)


def _check_disjoint(root: Path, splits: dict[str, list[tuple[str, Path]]]) -> None:
    """DataError when a patient has cases in two splits (a leak between training and testing)."""
    seen: dict[str, str] = {}
    for split, items in splits.items():
        for cid, _ in items:
            p = patient_of(cid)
            if seen.setdefault(p, split) != split:
                raise DataError(f"{root}: patient '{p}' is in both the {seen[p]} and the {split} list")


def _dataset(root: Path, layout: str, train: list[CaseRef], val: list[CaseRef], test: list[CaseRef],
             clean_cases_file: Path | str | None, spacing_known: bool) -> Dataset:
    groups = {r.id: patient_of(r.id) for r in train + val + test}
    trusted: list[str] = []
    if clean_cases_file is not None:
        trusted = resolve_trusted_ids(read_case_list(clean_cases_file), [r.id for r in train], clean_cases_file,
                                      groups)
    return Dataset(root=root, layout=layout, spatial_dims=3, class_names=list(CLASS_NAMES),
                   label_values=list(LABEL_VALUES), modalities=[MODALITY], train=train, val=val, test=test,
                   trusted_ids=trusted, groups=groups, train_dims=2, spacing_known=spacing_known)


ACDC_H5_LAYOUT = Layout("acdc_h5", is_acdc_h5_layout, read_acdc_h5,
                        "data/slices/ or data/*.h5 with train_slices.list/val.list (ACDC h5)")
ACDC_LAYOUT = Layout("acdc", is_acdc_nifti_layout, read_acdc_nifti, "patientNNN/ frame folders (ACDC)")
