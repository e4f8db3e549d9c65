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
    run("noise", "--data", ds, "--protocol", "morph", "--level", 1.0, "--seed", 0, "--out", noisy, "--quiet")
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

    res = run("evaluate", "--pred", pred, "--truth", ds / "labelsTs", "--out", tmp_path / "eval")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["ignore_value"] == 2 and summary["num_classes"] == 2 and summary["n_cases"] == 2
    assert "dice_1" in res.output or summary["metrics"]["dice_1"]["n"] == 2

    audit = tmp_path / "audit"
    run("audit", "--run", tmp_path / "run", "--data", noisy, "--out", audit, "--quiet")
    score = np.asarray(nib.load(str(audit / "maps" / "case00.nii.gz")).dataobj)
    assert np.all(np.isnan(score[:, :, :2])) and np.all(np.isfinite(score[:, :, 2:]))


def test_dataset_root_prediction_uses_file_ending(tmp_path, monkeypatch):
    from noisyseg.io import label_file_name

    assert label_file_name("case01", "x/case01_0000.nii.gz", ".nrrd") == "case01.nrrd"
    assert label_file_name("case01", "x/case01_0000.png", None) == "case01.png"
