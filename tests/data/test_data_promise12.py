"""PROMISE12 reader: CaseNN.mhd + CaseNN_segmentation.mhd (MetaImage), layout detection,
train/test split, geometry, label values and bad inputs."""

from __future__ import annotations

from pathlib import Path

import format_files as w  # sibling helper module
import numpy as np
import pytest

from noisyseg.data import detect_layout, open_dataset, validate_dataset
from noisyseg.data.case import normalize_intensity
from noisyseg.data.promise12 import is_promise12_layout, read_promise12
from noisyseg.errors import DataError

SPACING = (0.625, 0.625, 3.6)
SHAPES = {"Case00": (8, 6, 4), "Case01": (10, 6, 3), "Case02": (8, 8, 5), "Case03": (6, 6, 4)}


def mri(shape, seed=0) -> np.ndarray:
    """A T2-like int16 volume with a zero border (as MR scanners write)."""
    arr = np.random.default_rng(seed).integers(50, 900, shape).astype(np.int16)
    arr[0] = 0
    return arr


def prostate(shape) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[2:-2, 2:-2, 1:-1] = 1
    return lab


def make_promise12(root: Path, labelled=("Case00", "Case01", "Case02"), unlabelled=("Case03",)) -> Path:
    for i, cid in enumerate(labelled + unlabelled):
        w.metaimage(root / f"{cid}.mhd", mri(SHAPES[cid], i), SPACING, offset=(-80.0, -90.0, 10.0 * i))
        if cid in labelled:
            w.metaimage(root / f"{cid}_segmentation.mhd", prostate(SHAPES[cid]), SPACING,
                        offset=(-80.0, -90.0, 10.0 * i))
    return root


def test_detected_and_read(tmp_path):
    root = make_promise12(tmp_path / "PROMISE12")
    assert is_promise12_layout(root)
    assert detect_layout(root) == "promise12"
    ds = open_dataset(root)
    assert ds.layout == "promise12" and ds.spatial_dims == 3
    assert ds.modalities == ["T2"] and ds.in_channels == 1
    assert ds.class_names == ["background", "prostate"] and ds.label_values == [0, 1]
    assert [r.id for r in ds.train] == ["Case00", "Case01", "Case02"]
    assert [r.id for r in ds.test] == ["Case03"]
    assert [r.path.name for r in ds.train] == ["Case00.mhd", "Case01.mhd", "Case02.mhd"]
    assert validate_dataset(ds, progress=False) == {"train": 3, "test": 1}

    case = ds.case("Case01").load()
    assert case.image.shape == (1, 10, 6, 3) and case.image.dtype == np.float32
    np.testing.assert_allclose(case.image[0], normalize_intensity(mri(SHAPES["Case01"], 1), "T2"), rtol=1e-6)
    assert case.label.dtype == np.int64 and case.label.shape == (10, 6, 3)
    np.testing.assert_array_equal(case.label, prostate(SHAPES["Case01"]))
    assert set(np.unique(case.label).tolist()) == {0, 1}
    assert case.spacing == SPACING
    np.testing.assert_allclose(case.affine, [[-0.625, 0, 0, 80.0], [0, -0.625, 0, 90.0],
                                             [0, 0, 3.6, 10.0], [0, 0, 0, 1]])
    assert case.image_path == root / "Case01.mhd"

    test_case = ds.test[0].load()
    assert test_case.label is None and test_case.image.shape == (1, 6, 6, 4)


def test_nifti_written_with_the_affine_lines_up(tmp_path):
    """A prediction saved as NIfTI with the case's affine gets the image's RAS geometry."""
    import nibabel as nib

    from noisyseg.io import write_label

    ds = read_promise12(make_promise12(tmp_path / "p"))
    case = ds.train[0].load()
    out = write_label(tmp_path / "pred" / f"{case.id}.nii.gz", case.label, affine=case.affine, spacing=case.spacing)
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, case.affine)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # identity LPS direction, as ITK would show it
    np.testing.assert_allclose(img.header.get_zooms(), SPACING)


def test_challenge_folders(tmp_path):
    """TrainingData_Part1/2 and TestData/ as unpacked from the challenge zips; test ids reuse Case00."""
    root = tmp_path / "promise"
    make_promise12(root / "TrainingData_Part1", labelled=("Case00", "Case01"), unlabelled=())
    make_promise12(root / "TrainingData_Part2", labelled=("Case02",), unlabelled=())
    make_promise12(root / "TestData", labelled=(), unlabelled=("Case00", "Case03"))
    assert detect_layout(root) == "promise12"
    ds = open_dataset(root)
    assert [r.id for r in ds.train] == ["Case00", "Case01", "Case02"]
    assert [(r.id, r.path.parent.name) for r in ds.test] == [("Case00", "TestData"), ("Case03", "TestData")]
    assert ds.train[0].path.parent.name == "TrainingData_Part1"
    assert all(r.load().label is None for r in ds.test)


def test_labelled_test_folder_and_mha(tmp_path):
    root = make_promise12(tmp_path / "p", unlabelled=())
    w.metaimage(root / "test" / "Case03.mha", mri(SHAPES["Case03"]), SPACING)
    w.metaimage(root / "test" / "Case03_segmentation.mha", prostate(SHAPES["Case03"]), SPACING)
    ds = read_promise12(root)
    assert [r.id for r in ds.test] == ["Case03"]
    np.testing.assert_array_equal(ds.test[0].load().label, prostate(SHAPES["Case03"]))


def test_trusted_cases(tmp_path):
    root = make_promise12(tmp_path / "p")
    lst = tmp_path / "clean.txt"
    lst.write_text("Case02\n# comment\nCase00\n")
    assert open_dataset(root, clean_cases_file=lst).trusted_ids == ["Case02", "Case00"]
    lst.write_text("Case03\n")  # a test case is not a training case
    with pytest.raises(DataError, match="trusted case 'Case03' is not a training case"):
        read_promise12(root, clean_cases_file=lst)


def test_mask_value_2(tmp_path):
    root = make_promise12(tmp_path / "p")
    w.metaimage(root / "Case01_segmentation.mhd", prostate(SHAPES["Case01"]) * 2, SPACING)
    ds = read_promise12(root)
    ds.case("Case00").load()  # the others still load
    with pytest.raises(DataError, match=r"Case01_segmentation\.mhd: label values \[2\] are outside the declared "
                                        r"classes \[0, 1\]"):
        ds.case("Case01").load()
    with pytest.raises(DataError, match=r"Case01_segmentation\.mhd"):
        validate_dataset(ds, progress=False)


def test_mask_shape_mismatch(tmp_path):
    root = make_promise12(tmp_path / "p")
    w.metaimage(root / "Case02_segmentation.mhd", prostate((8, 8, 4)), SPACING)
    with pytest.raises(DataError, match=r"Case02_segmentation\.mhd: label shape \(8, 8, 4\) differs from image "
                                        r"shape \(8, 8, 5\) of Case02\.mhd"):
        read_promise12(root).case("Case02").load()


def test_truncated_raw_fails_on_load(tmp_path):
    root = make_promise12(tmp_path / "p")
    raw = root / "Case00.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    ds = read_promise12(root)  # opening reads headers of no case
    with pytest.raises(DataError, match=r"Case00\.raw: truncated MetaImage data"):
        ds.train[0].load()


def test_2d_image_rejected(tmp_path):
    root = make_promise12(tmp_path / "p")
    w.metaimage(root / "Case00.mhd", mri((8, 6)), (0.6, 0.6))
    with pytest.raises(DataError, match=r"Case00\.mhd: image has shape \(8, 6\); expected a 3D volume"):
        read_promise12(root).train[0].load()


def test_mask_without_image(tmp_path):
    root = make_promise12(tmp_path / "p")
    w.metaimage(root / "Case07_segmentation.mhd", prostate((4, 4, 4)))
    with pytest.raises(DataError, match=r"Case07_segmentation\.mhd: mask without its image Case07\.mhd"):
        read_promise12(root)


def test_case_twice_in_training(tmp_path):
    root = make_promise12(tmp_path / "p", unlabelled=())
    make_promise12(root / "TrainingData_Part1", labelled=("Case01",), unlabelled=())
    with pytest.raises(DataError, match=r"case 'Case01' found twice"):
        read_promise12(root)


def test_case_twice_in_one_folder_as_mhd_and_mha(tmp_path):
    root = make_promise12(tmp_path / "p", unlabelled=())
    w.metaimage(root / "Case02.mha", mri(SHAPES["Case02"]), SPACING)
    with pytest.raises(DataError, match=r"Case02\.m(hd|ha): case 'Case02' found twice"):
        read_promise12(root)


def test_not_promise12(tmp_path):
    (tmp_path / "x").mkdir()
    w.metaimage(tmp_path / "x" / "scan.mhd", mri((4, 4, 4)))
    assert not is_promise12_layout(tmp_path / "x")
    with pytest.raises(DataError, match="no known dataset layout .*PROMISE12"):
        detect_layout(tmp_path / "x")
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no PROMISE12 case files"):
        read_promise12(tmp_path / "y")
