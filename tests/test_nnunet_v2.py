"""An nnU-Net v2 raw dataset (two channel files per case, an ``ignore`` label) through the whole
command-line flow, without renaming a file: noise, train, predict, evaluate, audit."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from format_files import OBLIQUE, nnunet_v2_dataset
from typer.testing import CliRunner

from noisyseg.cli import app
from noisyseg.data import open_dataset
from noisyseg.data.case import IGNORE_INDEX

runner = CliRunner()


def run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def test_reader_keeps_ignore_out_of_the_classes(tmp_path):
    ds = open_dataset(nnunet_v2_dataset(tmp_path / "ds"))
    assert ds.class_names == ["background", "lesion"] and ds.ignore_value == 2 and ds.in_channels == 2
    case = ds.train[0].load()
    assert case.image.shape == (2, 16, 16, 8)
    assert np.all(case.label[:, :, :2] == IGNORE_INDEX) and case.label[:, :, 2:].min() >= 0


@pytest.mark.slow
def test_whole_flow_on_an_nnunet_v2_dataset(tmp_path):
    ds = nnunet_v2_dataset(tmp_path / "Dataset001_Toy")
    noisy = tmp_path / "noisy"
    run("noise", "--data", ds, "--protocol", "morph", "--level", 1.0, "--seed", 0, "--out", noisy, "--quiet",
        "--figures")
    for f in sorted((ds / "labelsTr").iterdir()):
        clean = np.asarray(nib.load(str(f)).dataobj)
        out = np.asarray(nib.load(str(noisy / "labelsTr" / f.name)).dataobj)
        assert np.array_equal(out == 2, clean == 2)  # ignored voxels stay ignored, no others become so
    assert json.loads((noisy / "noise_summary.json").read_text())["n_corrupted"] > 0

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data: {patch_size: [16, 16, 8], batch_size: 2, val_fraction: 0.2}\n"
                   "net: {channels: [4, 8], features: 4}\n"
                   "train: {max_steps: 4, val_every: 2, log_every: 1, ckpt_every: 100}\n")
    run("train", "--data", noisy, "--method", "supervised", "--out", tmp_path / "run", "--config", cfg, "--quiet")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "supervised" in log and "done" in log

    pred = tmp_path / "pred"
    run("predict", "--run", tmp_path / "run", "--images", ds / "imagesTs", "--out", pred, "--quiet")
    names = sorted(p.name for p in pred.iterdir())
    assert names == ["case06.nii.gz", "case07.nii.gz"]  # by case id, without the channel suffix
    for name in names:
        img = nib.load(str(pred / name))
        assert img.shape == (16, 16, 8)
        np.testing.assert_allclose(img.affine, OBLIQUE, atol=1e-5)  # the source geometry: opens on the image
        assert set(np.unique(np.asarray(img.dataobj)).tolist()) <= {0, 1}

    root_pred = tmp_path / "pred_root"  # the dataset root with --split: the same files
    run("predict", "--run", tmp_path / "run", "--images", ds, "--split", "test", "--out", root_pred, "--quiet")
    for name in names:
        assert np.array_equal(np.asarray(nib.load(str(root_pred / name)).dataobj),
                              np.asarray(nib.load(str(pred / name)).dataobj))

    res = run("evaluate", "--pred", pred, "--truth", ds / "labelsTs", "--out", tmp_path / "eval")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["ignore_value"] == 2 and summary["num_classes"] == 2 and summary["n_cases"] == 2
    assert "dice_1" in res.output or summary["metrics"]["dice_1"]["n"] == 2

    audit = tmp_path / "audit"
    run("audit", "--run", tmp_path / "run", "--data", noisy, "--out", audit, "--quiet")
    score = np.asarray(nib.load(str(audit / "maps" / "case00.nii.gz")).dataobj)
    assert np.all(np.isnan(score[:, :, :2])) and np.all(np.isfinite(score[:, :, 2:]))


def test_an_nrrd_dataset_is_read_and_predicted_in_its_file_ending(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    from noisyseg.io import label_file_name, read_file

    ds = nnunet_v2_dataset(tmp_path / "nii", n_train=2, n_test=0)
    root = tmp_path / "nrrd"
    for f in ds.rglob("*.nii.gz"):
        out = root / f.relative_to(ds).with_name(f.name.replace(".nii.gz", ".nrrd"))
        out.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.ReadImage(str(f)), str(out))
    meta = json.loads((ds / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nrrd"}))
    a, b = open_dataset(ds), open_dataset(root)
    ca, cb = a.train[0].load(), b.train[0].load()
    assert b.file_ending == ".nrrd" and np.allclose(ca.image, cb.image) and np.array_equal(ca.label, cb.label)
    np.testing.assert_allclose(cb.affine, read_file(ds / "imagesTr" / "case00_0000.nii.gz").affine, atol=1e-5)
    assert label_file_name(cb.id, cb.image_path, b.file_ending) == "case00.nrrd"


def test_plain_folder_channel_grouping(tmp_path):
    from noisyseg.data.decathlon import group_channel_files
    from noisyseg.errors import DataError

    files = [tmp_path / n for n in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz")]
    assert group_channel_files(files, 2) == [("a", files[:2]), ("b", files[2:])]
    one = [tmp_path / "a_0000.nii.gz", tmp_path / "b_0000.nii.gz"]
    assert group_channel_files(one, 1) == [("a", one[:1]), ("b", one[1:])]  # single channel: the suffix goes
    numbered = [tmp_path / "scan_0001.nii.gz", tmp_path / "scan_0002.nii.gz"]
    assert [c for c, _ in group_channel_files(numbered, 1)] == ["scan_0001", "scan_0002"]  # numbers, not channels
    with pytest.raises(DataError, match="case 'b' has channel files \\[0\\]"):
        group_channel_files(files[:3], 2)
