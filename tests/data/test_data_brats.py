"""BraTS 2021 reader: channel order, 0/1/2/4 -> 0..3, regions, unlabelled cases, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noisyseg.data.brats import read_brats
from noisyseg.data.case import normalize_intensity
from noisyseg.errors import DataError

import format_files as w  # sibling helper module

SHAPE = (6, 5, 4)
MODS = ("t1", "t1ce", "t2", "flair")


def make_case(root: Path, cid: str, seg: bool = True, skip: str | None = None) -> Path:
    folder = root / cid
    for i, mod in enumerate(MODS):
        if mod != skip:
            w.nifti(folder / f"{cid}_{mod}.nii.gz", w.image(SHAPE, seed=i))
    if seg:
        lab = np.zeros(SHAPE, np.uint8)
        lab[0], lab[1], lab[2] = 1, 2, 4
        w.nifti(folder / f"{cid}_seg.nii.gz", lab)
    return folder


def test_brats_channels_labels_regions(tmp_path):
    make_case(tmp_path, "BraTS2021_00000")
    make_case(tmp_path, "BraTS2021_00002")
    make_case(tmp_path, "BraTS2021_00001", seg=False)
    ds = read_brats(tmp_path)
    assert ds.layout == "brats" and ds.in_channels == 4 and ds.num_classes == 4
    assert ds.label_values == [0, 1, 2, 4]
    assert ds.regions == {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
    assert [r.id for r in ds.train] == ["BraTS2021_00000", "BraTS2021_00002"]
    assert [r.id for r in ds.test] == ["BraTS2021_00001"]
    case = ds.train[0].load()
    assert case.image.shape == (4, *SHAPE)
    # channel order flair, t1, t1ce, t2 (MODS index = seed)
    for ch, mod in enumerate(("flair", "t1", "t1ce", "t2")):
        expected = normalize_intensity(w.image(SHAPE, seed=MODS.index(mod)), "MRI")
        np.testing.assert_allclose(case.image[ch], expected, rtol=1e-5)
    assert case.label[0, 0, 0] == 1 and case.label[1, 0, 0] == 2 and case.label[2, 0, 0] == 3
    assert case.label[3, 0, 0] == 0
    assert case.spacing == pytest.approx((1.5, 0.8, 2.5))
    assert case.image_path.name == "BraTS2021_00000_flair.nii.gz"
    assert ds.test[0].load().label is None


def test_brats_clean_labels_and_trusted(tmp_path):
    folder = make_case(tmp_path, "BraTS2021_00000")
    w.nifti(folder / "BraTS2021_00000_seg_clean.nii.gz", np.zeros(SHAPE, np.uint8))
    trusted = tmp_path / "trusted.txt"
    trusted.write_text("BraTS2021_00000\n")
    ds = read_brats(tmp_path, clean_cases_file=trusted)
    assert ds.has_clean_labels and ds.trusted_ids == ["BraTS2021_00000"]
    assert ds.train[0].load().clean_label.max() == 0


def test_brats_missing_modality(tmp_path):
    make_case(tmp_path, "BraTS2021_00000", skip="t1ce")
    with pytest.raises(DataError, match=r"BraTS2021_00000_t1ce\.nii\.gz: file not found \(modality 't1ce'"):
        read_brats(tmp_path).train[0].load()


def test_brats_label_outside_classes(tmp_path):
    folder = make_case(tmp_path, "BraTS2021_00000")
    w.nifti(folder / "BraTS2021_00000_seg.nii.gz", w.label(SHAPE, 3))  # BraTS 2023 style label 3
    with pytest.raises(DataError, match=r"BraTS2021_00000_seg\.nii\.gz: label values \[3\] are outside"):
        read_brats(tmp_path).train[0].load()


def test_brats_modality_shape_mismatch(tmp_path):
    folder = make_case(tmp_path, "BraTS2021_00000")
    w.nifti(folder / "BraTS2021_00000_t2.nii.gz", w.image((6, 5, 3)))
    with pytest.raises(DataError, match=r"BraTS2021_00000_t2\.nii\.gz: shape \(6, 5, 3\) differs"):
        read_brats(tmp_path).train[0].load()


def test_brats_corrupt_nifti(tmp_path):
    folder = make_case(tmp_path, "BraTS2021_00000")
    w.garbage(folder / "BraTS2021_00000_flair.nii.gz")
    with pytest.raises(DataError, match=r"BraTS2021_00000_flair\.nii\.gz: cannot read file"):
        read_brats(tmp_path).train[0].load()


def test_brats_no_cases(tmp_path):
    (tmp_path / "not_a_case").mkdir()
    with pytest.raises(DataError, match="no BraTS case folders"):
        read_brats(tmp_path)
