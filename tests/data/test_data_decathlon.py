"""Decathlon / nnU-Net reader: shapes, geometry, dataset.json variants, and one test per bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noisyseg.data.case import normalize_intensity
from noisyseg.data.decathlon import read_decathlon
from noisyseg.errors import DataError

import format_files as w  # sibling helper module


@pytest.fixture
def msd3d(tmp_path: Path) -> Path:
    """MSD v1 Task02-like: 3 training cases, 1 test case with label, dataset.json."""
    root = tmp_path / "Task02_Heart"
    shape = (6, 5, 4)
    for i in range(3):
        w.nifti(root / "imagesTr" / f"la_{i:03d}.nii.gz", w.image(shape, i))
        w.nifti(root / "labelsTr" / f"la_{i:03d}.nii.gz", w.label(shape))
    w.nifti(root / "imagesTs" / "la_100.nii.gz", w.image(shape, 9))
    w.nifti(root / "labelsTs" / "la_100.nii.gz", w.label(shape))
    w.json_file(root / "dataset.json", {
        "name": "LeftAtrium",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "left atrium"},
        "numTraining": 3,
        "training": [{"image": f"./imagesTr/la_{i:03d}.nii.gz", "label": f"./labelsTr/la_{i:03d}.nii.gz"}
                     for i in range(3)],
        "test": ["./imagesTs/la_100.nii.gz"],
        "clean_cases": ["la_001"],
    })
    return root


def test_msd_v1_3d_shapes_geometry_and_splits(msd3d):
    ds = read_decathlon(msd3d)
    assert ds.layout == "decathlon" and ds.spatial_dims == 3
    assert ds.class_names == ["background", "left atrium"] and ds.label_values == [0, 1]
    assert ds.modalities == ["MRI"]
    assert [r.id for r in ds.train] == ["la_000", "la_001", "la_002"]
    assert [r.id for r in ds.test] == ["la_100"]
    assert ds.trusted_ids == ["la_001"]  # from dataset.json "clean_cases"
    assert not ds.has_clean_labels
    case = ds.train[1].load()
    assert case.image.shape == (1, 6, 5, 4) and case.image.dtype == np.float32
    assert case.label.dtype == np.int64 and case.label.shape == (6, 5, 4)
    assert set(np.unique(case.label)) == {0, 1}
    assert case.spacing == pytest.approx((1.5, 0.8, 2.5))
    np.testing.assert_allclose(case.affine, w.affine)
    np.testing.assert_allclose(case.image[0], normalize_intensity(w.image((6, 5, 4), 1), "MRI"), rtol=1e-5)
    assert case.image_path.name == "la_001.nii.gz"
    test_case = ds.test[0].load()
    assert test_case.label is not None and test_case.label.shape == (6, 5, 4)


def test_msd_4d_multichannel(tmp_path):
    root = tmp_path / "Task01"
    img = np.stack([w.image((5, 4, 3), s) for s in range(4)], axis=-1)  # (X, Y, Z, C) as MSD stores it
    w.nifti(root / "imagesTr" / "BRATS_001.nii.gz", img)
    w.nifti(root / "labelsTr" / "BRATS_001.nii.gz", w.label((5, 4, 3), 3))
    w.json_file(root / "dataset.json", {
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "training": [{"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}],
        "test": [],
    })
    ds = read_decathlon(root)
    assert ds.in_channels == 4 and ds.num_classes == 4
    case = ds.train[0].load()
    assert case.image.shape == (4, 5, 4, 3)
    assert case.spacing == pytest.approx((1.5, 0.8, 2.5))
    np.testing.assert_allclose(case.image[2], normalize_intensity(img[..., 2], "t1gd"), rtol=1e-5)
    assert case.label.max() == 3


def test_nnunet_v2_channel_files_and_json(tmp_path):
    root = tmp_path / "Dataset005"
    shape = (5, 4, 3)
    for cid in ("prostate_00", "prostate_01"):
        for ch in range(2):
            w.nifti(root / "imagesTr" / f"{cid}_{ch:04d}.nii.gz", w.image(shape, ch))
        w.nifti(root / "labelsTr" / f"{cid}.nii.gz", w.label(shape, 2))
    w.json_file(root / "dataset.json", {
        "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "PZ": 1, "TZ": 2, "whole": [1, 2]},
        "numTraining": 2, "file_ending": ".nii.gz",
    })
    ds = read_decathlon(root)
    assert [r.id for r in ds.train] == ["prostate_00", "prostate_01"]
    assert ds.modalities == ["T2", "ADC"] and ds.class_names == ["background", "PZ", "TZ"]
    assert ds.regions == {"whole": [1, 2]}
    case = ds.train[0].load()
    assert case.image.shape == (2, 5, 4, 3)
    assert case.image_path.name == "prostate_00_0000.nii.gz"
    assert set(np.unique(case.label)) == {0, 2}


def test_nnunet_v1_split_files_with_msd_json(tmp_path):
    root = tmp_path / "Task002"
    w.nifti(root / "imagesTr" / "la_003_0000.nii.gz", w.image((4, 4, 3)))
    w.nifti(root / "labelsTr" / "la_003.nii.gz", w.label((4, 4, 3)))
    w.json_file(root / "dataset.json", {
        "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "left atrium"},
        "training": [{"image": "./imagesTr/la_003.nii.gz", "label": "./labelsTr/la_003.nii.gz"}],
    })
    case = read_decathlon(root).train[0].load()
    assert case.id == "la_003" and case.image.shape == (1, 4, 4, 3)


def test_without_json_infers_classes_channels_and_split(tmp_path):
    root = tmp_path / "nojson"
    shape = (5, 5, 3)
    lab = np.zeros(shape, np.uint8)
    lab[0] = 2
    lab[1] = 5
    w.nifti(root / "imagesTr" / "a.nii.gz", w.image(shape))
    w.nifti(root / "labelsTr" / "a.nii.gz", lab)
    w.nifti(root / "imagesTr" / "b.nii.gz", w.image(shape, 1))
    w.nifti(root / "labelsTr" / "b.nii.gz", w.label(shape, 2))
    w.nifti(root / "imagesTs" / "c.nii.gz", w.image(shape, 2))  # unlabelled test case
    ds = read_decathlon(root)
    assert ds.label_values == [0, 2, 5] and ds.num_classes == 3
    assert ds.modalities == ["MRI"] and ds.trusted_ids == []
    a = ds.case("a").load()
    assert a.label[0, 0, 0] == 1 and a.label[1, 0, 0] == 2 and a.label[2, 0, 0] == 0
    assert [r.id for r in ds.test] == ["c"] and ds.test[0].load().label is None


def test_png_2d_gray_and_rgb(tmp_path):
    gray = tmp_path / "gray"
    rng = np.random.default_rng(0)
    w.png(gray / "imagesTr" / "s1.png", rng.integers(0, 255, (8, 6)))
    w.png(gray / "labelsTr" / "s1.png", w.label((8, 6)))
    ds = read_decathlon(gray)
    assert ds.spatial_dims == 2 and ds.modalities == ["MRI"]
    case = ds.train[0].load()
    assert case.image.shape == (1, 8, 6) and case.label.shape == (8, 6) and case.spacing == (1.0, 1.0)

    rgb = tmp_path / "rgb"
    w.png(rgb / "imagesTr" / "s1.png", rng.integers(0, 255, (8, 6, 3)))
    w.png(rgb / "labelsTr" / "s1.png", w.label((8, 6)) * 255)
    ds = read_decathlon(rgb)
    assert ds.in_channels == 3 and ds.label_values == [0, 255]
    case = ds.train[0].load()
    assert case.image.shape == (3, 8, 6) and set(np.unique(case.label)) == {0, 1}


def test_2d_nifti_is_2d(tmp_path):
    root = tmp_path / "n2d"
    w.nifti(root / "imagesTr" / "x.nii.gz", w.image((7, 5)))
    w.nifti(root / "labelsTr" / "x.nii.gz", w.label((7, 5)))
    ds = read_decathlon(root)
    assert ds.spatial_dims == 2
    case = ds.train[0].load()
    assert case.image.shape == (1, 7, 5) and case.spacing == pytest.approx((1.5, 0.8))


def test_clean_labels_and_trusted_file(msd3d, tmp_path):
    for i in range(3):
        w.nifti(msd3d / "labelsTr_clean" / f"la_{i:03d}.nii.gz", w.label((6, 5, 4)) * 0)
    trusted = tmp_path / "trusted.txt"
    trusted.write_text("# trusted cases\nla_002\nla_000\n")
    ds = read_decathlon(msd3d, clean_cases_file=trusted)
    assert ds.has_clean_labels
    assert ds.trusted_ids == ["la_002", "la_000"]  # the file overrides dataset.json
    case = ds.train[0].load()
    assert case.clean_label is not None and case.clean_label.max() == 0 and case.label.max() == 1


# --- one test per bad input ---------------------------------------------------------

def test_unknown_trusted_id_in_file(msd3d, tmp_path):
    trusted = tmp_path / "trusted_ids.txt"
    trusted.write_text("la_001\nla_999\n")
    with pytest.raises(DataError, match="trusted_ids.txt.*la_999"):
        read_decathlon(msd3d, clean_cases_file=trusted)


def test_unknown_trusted_id_in_json(msd3d):
    import json

    meta = json.loads((msd3d / "dataset.json").read_text())
    meta["clean_cases"] = ["la_01"]
    (msd3d / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"dataset\.json.*la_01.*did you mean"):
        read_decathlon(msd3d)


def test_missing_label_file(msd3d):
    (msd3d / "labelsTr" / "la_002.nii.gz").unlink()
    ds = read_decathlon(msd3d)
    with pytest.raises(DataError, match="la_002.nii.gz: file not found"):
        ds.case("la_002").load()


def test_missing_clean_label_file(msd3d):
    w.nifti(msd3d / "labelsTr_clean" / "la_000.nii.gz", w.label((6, 5, 4)))
    ds = read_decathlon(msd3d)
    ds.case("la_000").load()
    with pytest.raises(DataError, match=r"labelsTr_clean/la_001\.nii\.gz: file not found"):
        ds.case("la_001").load()


def test_corrupt_nifti(msd3d):
    w.garbage(msd3d / "imagesTr" / "la_002.nii.gz")
    ds = read_decathlon(msd3d)
    with pytest.raises(DataError, match=r"la_002\.nii\.gz: cannot read file"):
        ds.case("la_002").load()


def test_corrupt_png(tmp_path):
    root = tmp_path / "p"
    w.png(root / "imagesTr" / "ok.png", np.full((4, 4), 9))
    w.png(root / "labelsTr" / "ok.png", w.label((4, 4)))
    w.garbage(root / "imagesTr" / "broken.png")
    w.png(root / "labelsTr" / "broken.png", w.label((4, 4)))
    w.json_file(root / "dataset.json", {"modality": {"0": "MRI"}, "labels": {"0": "bg", "1": "fg"}})
    ds = read_decathlon(root)
    ds.case("ok").load()
    with pytest.raises(DataError, match=r"broken\.png: cannot read file"):
        ds.case("broken").load()


def test_shape_mismatch(msd3d):
    w.nifti(msd3d / "labelsTr" / "la_001.nii.gz", w.label((6, 5, 3)))
    with pytest.raises(DataError, match=r"labelsTr/la_001\.nii\.gz: label shape \(6, 5, 3\) differs"):
        read_decathlon(msd3d).case("la_001").load()


def test_label_outside_classes(msd3d):
    w.nifti(msd3d / "labelsTr" / "la_000.nii.gz", w.label((6, 5, 4), 3))
    with pytest.raises(DataError, match=r"la_000\.nii\.gz: label values \[3\] are outside"):
        read_decathlon(msd3d).case("la_000").load()


def test_nan_intensities(msd3d):
    img = w.image((6, 5, 4))
    img[2, 2, 2] = np.nan
    w.nifti(msd3d / "imagesTr" / "la_000.nii.gz", img)
    with pytest.raises(DataError, match=r"imagesTr/la_000\.nii\.gz: image holds 1 NaN"):
        read_decathlon(msd3d).case("la_000").load()


def test_wrong_channel_count(msd3d):
    w.nifti(msd3d / "imagesTr" / "la_001.nii.gz", np.stack([w.image((6, 5, 4))] * 2, axis=-1))
    with pytest.raises(DataError, match=r"la_001\.nii\.gz: image has 2 channel\(s\), expected 1"):
        read_decathlon(msd3d).case("la_001").load()


def test_missing_channel_file(tmp_path):
    root = tmp_path / "v2"
    w.nifti(root / "imagesTr" / "c1_0000.nii.gz", w.image((4, 4, 2)))
    w.nifti(root / "labelsTr" / "c1.nii.gz", w.label((4, 4, 2)))
    w.json_file(root / "dataset.json", {"channel_names": {"0": "T2", "1": "ADC"},
                                   "labels": {"background": 0, "x": 1}, "file_ending": ".nii.gz"})
    with pytest.raises(DataError, match=r"c1_0001\.nii\.gz: file not found"):
        read_decathlon(root).train[0].load()


def test_missing_labels_folder(tmp_path):
    w.nifti(tmp_path / "d" / "imagesTr" / "a.nii.gz", w.image((3, 3, 3)))
    with pytest.raises(DataError, match="labelsTr: folder not found"):
        read_decathlon(tmp_path / "d")


def test_bad_dataset_json(msd3d):
    (msd3d / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: cannot read"):
        read_decathlon(msd3d)


def test_empty_image_folders(tmp_path):
    (tmp_path / "e" / "imagesTr").mkdir(parents=True)
    with pytest.raises(DataError, match="no image files"):
        read_decathlon(tmp_path / "e")
