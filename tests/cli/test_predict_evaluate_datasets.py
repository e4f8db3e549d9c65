"""`predict` and `evaluate` on a dataset folder in the LA layout (h5 cases, case lists):
predictions are NIfTI with the case geometry, evaluation reads the labels from the h5
files, and the medpy convention differs from the MONAI one exactly as documented."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from noisyseg.cli import app
from noisyseg.metrics import case_metrics

import format_files as w  # tests/data helper, on sys.path via tests/conftest.py

runner = CliRunner()
TINY = ["--max-steps", "3"]


@pytest.fixture(scope="module")
def la_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("la")
    data = w.la_dataset(root / "LA", n_train=4, n_test=2)
    cfg = root / "cfg.yaml"
    cfg.write_text("data: {patch_size: [16, 16, 16], batch_size: 1, val_fraction: 0.25}\n"
                   "net: {channels: [4, 8], features: 4, num_res_units: 0}\n"
                   "train: {val_every: 3, ckpt_every: 3}\n")
    res = runner.invoke(app, ["train", "--data", str(data), "--out", str(root / "run"), "--config", str(cfg),
                              "--quiet", *TINY])
    assert res.exit_code == 0, res.output
    return data, root / "run", root


def test_predict_on_the_la_layout_writes_nifti_with_la_spacing(la_run):
    data, run, root = la_run
    res = runner.invoke(app, ["predict", "--run", str(run), "--images", str(data), "--out", str(root / "pred"),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (root / "pred").iterdir())
    assert files == ["LA0004.nii.gz", "LA0005.nii.gz"]  # the test.list cases
    img = nib.load(str(root / "pred" / "LA0004.nii.gz"))
    assert img.shape == (24, 24, 16) and np.allclose(img.header.get_zooms(), 0.625)
    assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1}
    res = runner.invoke(app, ["predict", "--run", str(run), "--images", str(data), "--out", str(root / "p2"),
                              "--split", "nope"])
    assert res.exit_code == 2 and not (root / "p2").exists()


def test_evaluate_against_the_dataset_reads_labels_from_h5_and_both_conventions(la_run):
    data, run, root = la_run
    pred = root / "pred_eval"
    assert runner.invoke(app, ["predict", "--run", str(run), "--images", str(data), "--out", str(pred),
                               "--quiet"]).exit_code == 0
    summaries = {}
    for conv in ("monai", "medpy"):
        res = runner.invoke(app, ["evaluate", "--pred", str(pred), "--truth", str(data), "--out",
                                  str(root / f"ev_{conv}"), "--convention", conv])
        assert res.exit_code == 0, res.output
        summaries[conv] = json.loads((root / f"ev_{conv}" / "summary.json").read_text())
    # brute force for one case: the numbers come from the h5 label and 0.625 mm spacing
    import h5py

    with h5py.File(data / "2018LA_Seg_Training Set" / "LA0005" / "mri_norm2.h5") as h:
        truth = np.asarray(h["label"]).astype(np.int64)
    p = np.asarray(nib.load(str(pred / "LA0005.nii.gz")).dataobj).astype(np.int64)
    for conv in ("monai", "medpy"):
        m = case_metrics(p, truth, num_classes=2, spacing=0.625, convention=conv)
        rows = (root / f"ev_{conv}" / "metrics.csv").read_text().splitlines()
        header = rows[0].split(",")
        row = next(r.split(",") for r in rows[1:] if r.startswith("LA0005"))
        assert float(row[header.index("hd95_1")]) == pytest.approx(m["hd95_1"], nan_ok=True)
        assert float(row[header.index("dice_1")]) == pytest.approx(m["dice_1"])
    assert summaries["monai"]["metrics"]["dice_1"]["n"] == 2
    res = runner.invoke(app, ["evaluate", "--pred", str(pred), "--truth", str(data), "--out", str(root / "ev_k3"),
                              "--num-classes", "3"])  # the dataset says 2: refused, nothing written
    assert res.exit_code == 2 and "--num-classes 3" in res.output and not (root / "ev_k3").exists()
