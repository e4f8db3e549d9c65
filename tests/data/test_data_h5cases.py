"""LA / Pancreas-CT h5 reader: community layouts, lists, spacing, clean labels, bad inputs,
and two real LA volumes when ../shared/data/LA is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noisyseg.data.h5cases import read_h5_dataset
from noisyseg.errors import DataError

import format_files as w  # sibling helper module

LA_DIR = "2018LA_Seg_Training Set"
SHAPE = (7, 6, 5)


def make_la(root: Path, ids=("AAA", "BBB", "CCC"), **extra) -> Path:
    for i, cid in enumerate(ids):
        w.h5(root / LA_DIR / cid / "mri_norm2.h5", image=w.image(SHAPE, i), label=w.label(SHAPE), **extra)
    (root / "train.list").write_text("\n".join(ids) + "\n")
    return root


def test_la_layout_shapes_spacing_no_renormalisation(tmp_path):
    root = make_la(tmp_path / "LA")
    ds = read_h5_dataset(root)
    assert ds.layout == "h5" and ds.spatial_dims == 3 and ds.modalities == ["MRI"]
    assert ds.class_names == ["background", "left atrium"]
    assert [r.id for r in ds.train] == ["AAA", "BBB", "CCC"] and ds.test == []  # only train.list
    case = ds.train[1].load()
    assert case.image.shape == (1, *SHAPE) and case.image.dtype == np.float32
    np.testing.assert_array_equal(case.image[0], w.image(SHAPE, 1))  # stored values kept as is
    assert case.label.dtype == np.int64 and set(np.unique(case.label)) == {0, 1}
    assert case.spacing == (0.625, 0.625, 0.625)
    np.testing.assert_allclose(np.diag(case.affine), [0.625, 0.625, 0.625, 1])
    assert case.clean_label is None and not ds.has_clean_labels


def test_test_list_absent_ids_skipped(tmp_path):
    root = make_la(tmp_path / "LA", ids=("AAA", "BBB", "TTT"))
    (root / "train.list").write_text("AAA\nBBB\n")
    (root / "test.list").write_text("TTT\nNOT_ON_DISK\n")
    ds = read_h5_dataset(root)
    assert [r.id for r in ds.train] == ["AAA", "BBB"] and [r.id for r in ds.test] == ["TTT"]
    assert ds.test[0].load().label is not None


def test_official_lists_used_when_no_train_list(tmp_path):
    root = make_la(tmp_path / "LA", ids=("AAA", "BBB"))
    (root / "train.list").unlink()
    (root / "train_official.list").write_text("AAA\nBBB\nMISSING1\n")
    (root / "test_official.list").write_text("T1\nT2\n")
    with pytest.warns(UserWarning, match="MISSING1"):
        ds = read_h5_dataset(root)
    assert [r.id for r in ds.train] == ["AAA", "BBB"] and ds.test == []


def test_no_listed_case_exists(tmp_path):
    root = make_la(tmp_path / "LA")
    (root / "train.list").write_text("X1\nX2\n")
    with pytest.raises(DataError, match=r"train\.list: none of the 2 listed cases"):
        read_h5_dataset(root)


def test_train_test_overlap_is_refused(tmp_path):
    root = make_la(tmp_path / "LA")
    (root / "test.list").write_text("BBB\n")
    with pytest.raises(DataError, match=r"test\.list: case 'BBB' is also in train\.list"):
        read_h5_dataset(root)


def test_pancreas_layout_default_and_attribute_spacing(tmp_path):
    root = tmp_path / "Pancreas"
    w.h5(root / "Pancreas_h5" / "image0001_norm.h5", image=w.image(SHAPE), label=w.label(SHAPE))
    w.h5(root / "Pancreas_h5" / "image0002_norm.h5", image=w.image(SHAPE, 1), label=w.label(SHAPE),
         attrs={"spacing": [0.7, 0.7, 1.5]})
    (root / "train.list").write_text("image0001\nimage0002\n")
    ds = read_h5_dataset(root)
    assert ds.modalities == ["CT"] and ds.class_names == ["background", "pancreas"]
    assert ds.train[0].load().spacing == (1.0, 1.0, 1.0)
    assert ds.train[1].load().spacing == pytest.approx((0.7, 0.7, 1.5))
    assert read_h5_dataset(root, spacing=(0.8, 0.8, 1.0)).train[0].load().spacing == (0.8, 0.8, 1.0)


def test_clean_labels_and_trusted_cases(tmp_path):
    root = make_la(tmp_path / "LA", label_clean=np.zeros(SHAPE, np.uint8))
    trusted = tmp_path / "clean_ids.txt"
    trusted.write_text("CCC\n")
    ds = read_h5_dataset(root, clean_cases_file=trusted)
    assert ds.has_clean_labels and ds.trusted_ids == ["CCC"]
    case = ds.train[0].load()
    assert case.clean_label is not None and case.clean_label.max() == 0


def test_unknown_trusted_id(tmp_path):
    root = make_la(tmp_path / "LA")
    trusted = tmp_path / "clean_ids.txt"
    trusted.write_text("CCX\n")
    with pytest.raises(DataError, match=r"clean_ids\.txt: trusted case 'CCX'.*did you mean 'CCC'"):
        read_h5_dataset(root, clean_cases_file=trusted)


def test_corrupt_h5(tmp_path):
    root = make_la(tmp_path / "LA")
    w.garbage(root / LA_DIR / "BBB" / "mri_norm2.h5")
    ds = read_h5_dataset(root)
    with pytest.raises(DataError, match=r"BBB/mri_norm2\.h5: cannot read file"):
        ds.case("BBB").load()


def test_h5_missing_label_key(tmp_path):
    root = make_la(tmp_path / "LA")
    w.h5(root / LA_DIR / "CCC" / "mri_norm2.h5", image=w.image(SHAPE))
    with pytest.raises(DataError, match=r"CCC/mri_norm2\.h5: h5 file has no dataset 'label'"):
        read_h5_dataset(root).case("CCC").load()


def test_h5_shape_mismatch(tmp_path):
    root = make_la(tmp_path / "LA")
    w.h5(root / LA_DIR / "AAA" / "mri_norm2.h5", image=w.image(SHAPE), label=w.label((7, 6, 4)))
    with pytest.raises(DataError, match=r"AAA/mri_norm2\.h5: label shape \(7, 6, 4\) differs"):
        read_h5_dataset(root).case("AAA").load()


def test_h5_label_outside_classes(tmp_path):
    root = make_la(tmp_path / "LA")
    w.h5(root / LA_DIR / "AAA" / "mri_norm2.h5", image=w.image(SHAPE), label=w.label(SHAPE, 2))
    with pytest.raises(DataError, match=r"AAA/mri_norm2\.h5: label values \[2\] are outside"):
        read_h5_dataset(root).case("AAA").load()


def test_h5_nan_intensities(tmp_path):
    root = make_la(tmp_path / "LA")
    img = w.image(SHAPE)
    img[0, 0, 0] = np.inf
    w.h5(root / LA_DIR / "AAA" / "mri_norm2.h5", image=img, label=w.label(SHAPE))
    with pytest.raises(DataError, match=r"AAA/mri_norm2\.h5: image holds 1 NaN or Inf"):
        read_h5_dataset(root).case("AAA").load()


def test_h5_no_train_list(tmp_path):
    root = make_la(tmp_path / "LA")
    (root / "train.list").unlink()
    with pytest.raises(DataError, match="no train.list"):
        read_h5_dataset(root)


# --- the real LA volumes beside the repository ---------------------------------------

REAL_LA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "LA").resolve()


@pytest.mark.la
@pytest.mark.skipif(not (REAL_LA / LA_DIR).is_dir(), reason="real LA data not at ../shared/data/LA")
def test_real_la_volumes():
    ds = read_h5_dataset(REAL_LA)
    assert len(ds.train) == len((REAL_LA / "train.list").read_text().split())
    for ref in ds.train[:2]:
        case = ref.load()
        assert case.image.ndim == 4 and case.image.shape[0] == 1 and case.image.shape[3] == 88
        assert case.label.shape == case.image.shape[1:]
        assert set(np.unique(case.label).tolist()) == {0, 1}
        assert case.spacing == (0.625, 0.625, 0.625)
        assert np.isfinite(case.image).all()
