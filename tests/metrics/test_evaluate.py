"""evaluate_folders end to end on NIfTI and PNG files."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from noisyseg.errors import ConfigError, DataError
from noisyseg.io import write_label
from noisyseg.metrics import EMPTY_MASK_POLICY, case_metrics, evaluate_folders, worst_distance


def _cube(shape, lo, hi, value=1, base=None):
    arr = np.zeros(shape, np.uint8) if base is None else base
    arr[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return arr


def _read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], {r[0]: [float(v) for v in r[1:]] for r in rows[1:]}


@pytest.fixture
def nifti_folders(tmp_path):
    shape, sp = (16, 14, 10), (0.8, 0.8, 2.0)
    truths = {
        "case_a": _cube(shape, (2, 2, 2), (8, 8, 6), 1, _cube(shape, (9, 2, 2), (13, 6, 5), 2)),
        "case_b": _cube(shape, (4, 4, 1), (10, 10, 7), 1),  # class 2 absent from both -> undefined
        "case_c": _cube(shape, (3, 3, 3), (9, 9, 8), 1, _cube(shape, (10, 8, 1), (14, 12, 4), 2)),
    }
    preds = {
        "case_a": _cube(shape, (3, 2, 2), (9, 8, 6), 1, _cube(shape, (9, 3, 2), (13, 7, 6), 2)),
        "case_b": _cube(shape, (4, 5, 1), (10, 11, 6), 1),
        "case_c": _cube(shape, (3, 3, 3), (9, 9, 8), 1),  # class 2 missed -> worst distance
    }
    tdir, pdir = tmp_path / "labels", tmp_path / "preds"
    for cid in truths:
        write_label(tdir / f"{cid}.nii.gz", truths[cid], spacing=sp)
        write_label(pdir / f"{cid}.nii.gz", preds[cid], spacing=sp)
    return tdir, pdir, truths, preds, sp


def test_nifti_end_to_end(tmp_path, nifti_folders):
    tdir, pdir, truths, preds, sp = nifti_folders
    out = tmp_path / "out"
    summary = evaluate_folders(pdir, tdir, out)
    header, rows = _read_csv(out / "metrics.csv")
    assert header == ["case", "dice_1", "iou_1", "hd95_1", "asd_1", "dice_2", "iou_2", "hd95_2", "asd_2"]
    assert sorted(rows) == ["case_a", "case_b", "case_c"]
    for cid in truths:
        want = case_metrics(preds[cid], truths[cid], num_classes=3, spacing=sp)
        # NIfTI stores the zooms as float32, hence rtol 1e-6
        np.testing.assert_allclose(rows[cid], [want[c] for c in header[1:]], rtol=1e-6)
    assert all(math.isnan(v) for v in rows["case_b"][4:])
    assert rows["case_c"][6] == pytest.approx(worst_distance((16, 14, 10), sp), rel=1e-6)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    assert on_disk["convention"] == "monai" and on_disk["empty_mask_policy"] == EMPTY_MASK_POLICY
    assert on_disk["num_classes"] == 3
    for j, col in enumerate(header[1:]):
        vals = np.array([rows[c][j] for c in rows])
        ok = vals[~np.isnan(vals)]
        stats = on_disk["metrics"][col]
        assert stats["n"] == ok.size and stats["n_undefined"] == vals.size - ok.size
        assert stats["mean"] == pytest.approx(ok.mean()) and stats["std"] == pytest.approx(ok.std())
    assert on_disk["metrics"]["dice_2"]["n_undefined"] == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_medpy_convention_and_spacing_override(tmp_path, nifti_folders):
    tdir, pdir, truths, preds, _ = nifti_folders
    summary = evaluate_folders(pdir, tdir, tmp_path / "out", convention="medpy", spacing=(1.0, 1.0, 1.0),
                               num_classes=3, include_background=True)
    header, rows = _read_csv(tmp_path / "out" / "metrics.csv")
    assert header[1:5] == ["dice_0", "iou_0", "hd95_0", "asd_0"]
    want = case_metrics(preds["case_a"], truths["case_a"], num_classes=3, spacing=1.0, convention="medpy",
                        include_background=True)
    np.testing.assert_allclose(rows["case_a"], [want[c] for c in header[1:]], rtol=1e-12)
    assert summary["convention"] == "medpy" and summary["spacing"] == [1.0, 1.0, 1.0]


def test_label_values_and_regions(tmp_path):
    shape, sp = (12, 12, 8), (1.0, 1.0, 1.5)
    truth = _cube(shape, (1, 1, 1), (10, 10, 7), 2)  # edema
    truth[3:8, 3:8, 2:6] = 1  # necrosis
    truth[4:6, 4:6, 3:5] = 4  # enhancing tumour
    pred = truth.copy()
    pred[4:6, 4:6, 3:5] = 1  # ET (raw 4) missed
    write_label(tmp_path / "t" / "brats_001.nii.gz", truth, spacing=sp)
    write_label(tmp_path / "p" / "brats_001.nii", pred, spacing=sp)
    regions = {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
    evaluate_folders(tmp_path / "p", tmp_path / "t", tmp_path / "out", label_values=[0, 1, 2, 4], regions=regions)
    header, rows = _read_csv(tmp_path / "out" / "metrics.csv")
    assert header[-12:] == [f"{m}_{r}" for r in regions for m in ("dice", "iou", "hd95", "asd")]
    row = dict(zip(header[1:], rows["brats_001"]))
    assert row["dice_WT"] == pytest.approx(1.0) and row["hd95_WT"] == pytest.approx(0.0)
    assert row["dice_ET"] == 0.0 and row["hd95_ET"] == pytest.approx(worst_distance(shape, sp))
    assert row["dice_3"] == 0.0
    # without label_values the gap at raw value 3 is reported instead of silently scored
    with pytest.raises(DataError, match=r"label_values=\[0, 1, 2, 4\]"):
        evaluate_folders(tmp_path / "p", tmp_path / "t", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_png_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    tdir, pdir = tmp_path / "masks", tmp_path / "preds"
    truths, preds = {}, {}
    for i in range(3):
        t = np.zeros((32, 40), np.uint8)
        r, c = rng.integers(4, 20, 2)
        t[r:r + 8, c:c + 12] = 255
        p = np.roll(t, int(rng.integers(-3, 4)), axis=1)
        truths[f"img{i}"], preds[f"img{i}"] = t, p
        write_label(tdir / f"img{i}.png", t)
        write_label(pdir / f"img{i}.png", p)
    summary = evaluate_folders(pdir, tdir, tmp_path / "out", label_values=[0, 255])
    header, rows = _read_csv(tmp_path / "out" / "metrics.csv")
    assert header == ["case", "dice_1", "iou_1", "hd95_1", "asd_1"]
    for cid in truths:
        want = case_metrics(preds[cid] // 255, truths[cid] // 255, num_classes=2, spacing=1.0)
        np.testing.assert_allclose(rows[cid], list(want.values()), rtol=1e-12)
    assert summary["metrics"]["dice_1"]["n"] == 3
    # 0/255 masks without label_values: a clear error, not 255 classes
    with pytest.raises(DataError, match="label_values"):
        evaluate_folders(pdir, tdir, tmp_path / "out3")


def test_missing_prediction(tmp_path, nifti_folders):
    tdir, pdir, *_ = nifti_folders
    (pdir / "case_b.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case_b\.nii\.gz.*no prediction"):
        evaluate_folders(pdir, tdir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shape_mismatch(tmp_path, nifti_folders):
    tdir, pdir, *_ = nifti_folders
    write_label(pdir / "case_c.nii.gz", np.zeros((16, 14, 9), np.uint8), spacing=(0.8, 0.8, 2.0))
    with pytest.raises(DataError, match=r"case_c\.nii\.gz.*shape"):
        evaluate_folders(pdir, tdir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prediction_label_outside_classes(tmp_path, nifti_folders):
    tdir, pdir, truths, *_ = nifti_folders
    bad = truths["case_b"].copy()
    bad[0, 0, 0] = 5
    write_label(pdir / "case_b.nii.gz", bad, spacing=(0.8, 0.8, 2.0))
    with pytest.raises(DataError, match=r"case_b\.nii\.gz.*outside"):
        evaluate_folders(pdir, tdir, tmp_path / "out", num_classes=3)
    assert not (tmp_path / "out").exists()


def test_spacing_mismatch(tmp_path, nifti_folders):
    tdir, pdir, truths, *_ = nifti_folders
    write_label(pdir / "case_a.nii.gz", truths["case_a"], spacing=(1.0, 1.0, 1.0))
    with pytest.raises(DataError, match=r"case_a\.nii\.gz.*spacing"):
        evaluate_folders(pdir, tdir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_folder_and_bad_options(tmp_path, nifti_folders):
    tdir, pdir, *_ = nifti_folders
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no prediction files"):
        evaluate_folders(tmp_path / "empty", tdir, tmp_path / "out")
    with pytest.raises(DataError, match="no label files"):
        evaluate_folders(pdir, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ConfigError, match="convention"):
        evaluate_folders(pdir, tdir, tmp_path / "out", convention="itk")
    with pytest.raises(ConfigError, match="label_values"):
        evaluate_folders(pdir, tdir, tmp_path / "out", num_classes=2, label_values=[0, 1, 2])
    assert not (tmp_path / "out").exists()
