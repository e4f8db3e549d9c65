"""LA (2018 Atrial Segmentation) and Pancreas-CT (NIH) as the community's h5 files.

The semi-supervised / noisy-label literature (UA-MT, MC-Net, MTCL, CLCS) distributes
both datasets preprocessed, one h5 file per case with datasets ``image`` (float32,
already normalised, axes (x, y, z)) and ``label`` (uint8 {0, 1}), plus text lists of
case ids:

LA::

    <root>/2018LA_Seg_Training Set/<ID>/mri_norm2.h5
    <root>/train.list   [test.list]     (or train_official.list / test_official.list)

Pancreas-CT (MC-Net / UA-MT code: ``root + "/Pancreas_h5/" + id + "_norm.h5"``)::

    <root>/Pancreas_h5/<ID>_norm.h5
    <root>/train.list   [test.list]     (or pancreas_train.list / pancreas_test.list)

Other places tried for a case file, so that both community variants and hand-made
folders open: ``<root>/<ID>/mri_norm2.h5`` (the co-training "Pancreas-CT-all/PANCREAS_XXXX"
variant), ``<root>/<ID>.h5``, ``<root>/<ID>_norm.h5``, ``<root>/<ID>/<single>.h5``.

Spacing: an h5 attribute ``spacing`` (on the file or on ``image``) wins. Otherwise LA is
0.625 mm isotropic (the source MRI) and Pancreas-CT 1.0 mm isotropic, because the
community preprocessing scripts resample the NIH CT to 1 mm isotropic before cropping;
``spacing=`` overrides both. Images are used as stored (already z-scored): they are not
renormalised. An optional h5 dataset ``label_clean`` gives the known clean label.

Missing cases: ids of the test list that are not on disk are skipped silently (the LA
release lists 20 official test ids whose volumes are not distributed); training ids
that are not on disk are skipped with a warning; DataError if no training case exists.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import read_file
from .case import Case, CaseRef, Dataset, Layout, check_finite, check_same_shape, map_labels, read_case_list, \
    resolve_trusted_ids

LA_FOLDER = "2018LA_Seg_Training Set"
PANCREAS_FOLDER = "Pancreas_h5"
LA_SPACING = (0.625, 0.625, 0.625)
PANCREAS_SPACING = (1.0, 1.0, 1.0)
TRAIN_LISTS = ("train.list", "train_official.list", "pancreas_train.list")
TEST_LISTS = ("test.list", "test_official.list", "pancreas_test.list")


def is_h5_layout(root: Path) -> bool:
    """True if `root` looks like an LA / Pancreas-CT h5 folder."""
    if (root / LA_FOLDER).is_dir() or (root / PANCREAS_FOLDER).is_dir():
        return True
    if not any((root / n).is_file() for n in TRAIN_LISTS):
        return False
    return any(root.glob("*.h5")) or any(root.glob("*/*.h5"))


def _case_file(root: Path, cid: str) -> Path | None:
    """The h5 file of a case id, or None if none of the known places holds it."""
    for p in (root / LA_FOLDER / cid / "mri_norm2.h5",
              root / PANCREAS_FOLDER / f"{cid}_norm.h5",
              root / PANCREAS_FOLDER / f"{cid}.h5",
              root / cid / "mri_norm2.h5",
              root / f"{cid}_norm.h5",
              root / f"{cid}.h5"):
        if p.is_file():
            return p
    folder = root / cid
    if folder.is_dir():
        h5s = sorted(folder.glob("*.h5"))
        if len(h5s) == 1:
            return h5s[0]
    return None


def h5_info(path: Path) -> tuple[set[str], tuple[float, ...] | None]:
    """Dataset names and the 'spacing' attribute (None if absent) of an h5 file."""
    try:
        import h5py

        with h5py.File(path, "r") as h5:
            keys = set(h5.keys())
            sp = h5.attrs.get("spacing")
            if sp is None and "image" in h5:
                sp = h5["image"].attrs.get("spacing")
    except Exception as exc:
        raise DataError(f"{path}: cannot read file ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if sp is None:
        return keys, None
    sp_t = tuple(float(s) for s in np.ravel(sp))
    if len(sp_t) != 3 or not all(np.isfinite(s) and s > 0 for s in sp_t):
        raise DataError(f"{path}: 'spacing' attribute {sp_t} is not 3 positive numbers")
    return keys, sp_t


def _load_h5_case(cid: str, path: Path, default_spacing: tuple[float, ...], want_clean: bool,
                  label_values: list[int], labelled: bool = True) -> Case:
    keys, sp = h5_info(path)
    spacing = sp or tuple(default_spacing)
    img = read_file(path, h5_key="image").array
    if img.ndim != 3:
        raise DataError(f"{path}: 'image' has shape {img.shape}; expected (X, Y, Z)")
    if img.dtype.kind not in "fiub":
        raise DataError(f"{path}: 'image' has non-numeric type {img.dtype}")
    check_finite(img, path)
    image = np.asarray(img, dtype=np.float32)[None]  # already normalised: keep as stored
    label = clean = None
    if labelled or "label" in keys:
        lab = read_file(path, h5_key="label").array
        check_same_shape(img.shape, lab.shape, path, path)
        label = map_labels(lab, label_values, path)
    if want_clean:
        if "label_clean" not in keys:
            raise DataError(f"{path}: h5 file has no dataset 'label_clean' (other cases have one)")
        cl = read_file(path, h5_key="label_clean").array
        check_same_shape(img.shape, cl.shape, path, path)
        clean = map_labels(cl, label_values, path)
    affine = np.diag([*spacing, 1.0]).astype(np.float64)
    return Case(id=cid, image=image, label=label, spacing=tuple(float(s) for s in spacing),
                affine=affine, image_path=path, clean_label=clean)


def read_h5_dataset(root: Path | str, *, clean_cases_file: Path | str | None = None,
                    spacing: tuple[float, float, float] | None = None) -> Dataset:
    """Open an LA or Pancreas-CT h5 folder (see the module docstring for the layout).

    Args:
        root: the folder holding the case lists and the h5 files.
        clean_cases_file: optional text file, one trusted training case id per line.
        spacing: voxel size in mm when the files carry no 'spacing' attribute
            (default: 0.625 isotropic for LA, 1.0 isotropic otherwise).
    Returns:
        a Dataset (layout 'h5', 3D, one channel, classes background/foreground).
    Raises:
        DataError: no train list, no listed training case on disk, a case in both lists,
            unknown trusted ids.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    train_list = next((root / n for n in TRAIN_LISTS if (root / n).is_file()), None)
    if train_list is None:
        raise DataError(f"{root}: no train.list (h5 layout: one case id per line)")
    test_list = next((root / n for n in TEST_LISTS if (root / n).is_file()), None)
    is_la = (root / LA_FOLDER).is_dir()
    is_pancreas = (root / PANCREAS_FOLDER).is_dir() and not is_la
    if spacing is None:
        spacing = LA_SPACING if is_la else PANCREAS_SPACING
    if is_la:
        modality, fg = "MRI", "left atrium"
    elif is_pancreas:
        modality, fg = "CT", "pancreas"
    else:
        modality, fg = "image", "foreground"
    label_values = [0, 1]

    train_ids = read_case_list(train_list)
    test_ids = read_case_list(test_list) if test_list is not None else []
    both = sorted(set(train_ids) & set(test_ids))
    if both:
        raise DataError(f"{test_list}: case '{both[0]}' is also in {train_list.name} (train/test leak)")
    train_files: list[tuple[str, Path]] = []
    missing: list[str] = []
    for cid in dict.fromkeys(train_ids):
        p = _case_file(root, cid)
        if p is None:
            missing.append(cid)
        else:
            train_files.append((cid, p))
    if not train_files:
        where = root / LA_FOLDER / train_ids[0] / "mri_norm2.h5" if is_la and train_ids else root
        raise DataError(
            f"{train_list}: none of the {len(train_ids)} listed cases exists on disk (looked for e.g. {where})"
        )
    if missing:
        warnings.warn(f"{train_list}: {len(missing)} listed case(s) not on disk, skipped "
                      f"(first: {missing[0]})", stacklevel=2)
    test_files = [(cid, p) for cid in dict.fromkeys(test_ids) if (p := _case_file(root, cid)) is not None]

    first_keys, _ = h5_info(train_files[0][1])
    has_clean = "label_clean" in first_keys
    train = [CaseRef(id=cid, path=p, loader=partial(_load_h5_case, cid, p, spacing, has_clean, label_values))
             for cid, p in train_files]
    test = [CaseRef(id=cid, path=p, loader=partial(_load_h5_case, cid, p, spacing, False, label_values, False))
            for cid, p in test_files]
    trusted: list[str] = []
    if clean_cases_file is not None:
        trusted = resolve_trusted_ids(read_case_list(clean_cases_file), [c for c, _ in train_files],
                                      clean_cases_file)
    return Dataset(root=root, layout="h5", spatial_dims=3, class_names=["background", fg],
                   label_values=label_values, modalities=[modality], train=train, test=test,
                   trusted_ids=trusted, has_clean_labels=has_clean)


LAYOUT = Layout("h5", is_h5_layout, read_h5_dataset, "train.list with h5 files (LA/Pancreas)")
