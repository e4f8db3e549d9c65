"""Label-quality audit: scores on planted errors, detection metrics vs sklearn, and `noisyseg audit`."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from noisyseg import api
from noisyseg.audit import (
    audit,
    auroc,
    average_precision,
    class_thresholds,
    label_quality,
    spearman,
)
from noisyseg.cli import app
from noisyseg.errors import ConfigError, DataError
from noisyseg.noise.apply import make_noisy_dataset

runner = CliRunner()


def _planted(shape, fractions, k=3, seed=0):
    """Clean labels of random blobs, probs that know the clean class, and given labels with a
    planted share of voxels flipped to another class per case. Returns labels, probs, error masks."""
    rng = np.random.default_rng(seed)
    labels, probs, errors = [], [], []
    for frac in fractions:
        clean = rng.integers(0, k, size=shape)
        logits = rng.normal(0, 1.0, size=(k,) + shape)
        np.put_along_axis(logits, clean[None], np.take_along_axis(logits, clean[None], 0) + 2.5, 0)
        p = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
        err = rng.random(shape) < frac
        given = np.where(err, (clean + rng.integers(1, k, size=shape)) % k, clean)
        labels.append(given)
        probs.append(p)
        errors.append(err)
    return labels, probs, errors


@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 8)])
@pytest.mark.parametrize("method", ["self_confidence", "margin", "threshold"])
def test_planted_errors_score_higher_and_the_worst_case_ranks_first(shape, method):
    fractions = [0.02, 0.3, 0.1, 0.0, 0.2]
    labels, probs, errors = _planted(shape, fractions)
    for how in ("suspected_fraction", "mean_topk", "mean"):
        cases, voxels = label_quality(labels, probs, method=method, case_score_method=how, top_percent=20)
        assert cases.shape == (5,) and all(v.shape == shape and v.dtype == np.float32 for v in voxels)
        assert all(v.min() >= 0 and v.max() <= 1 for v in voxels)
        truth = np.concatenate([e.ravel() for e in errors])
        assert auroc(truth, np.concatenate([v.ravel() for v in voxels])) > 0.85
        assert int(np.argmax(cases)) == 1  # the most corrupted case
        assert spearman(cases, fractions) > 0.85


def test_array_inputs_single_and_batch_and_threshold_semantics():
    labels, probs, _ = _planted((16, 16), [0.1, 0.2])
    one_case, one_vox = label_quality(labels[0], probs[0])
    assert one_case.shape == (1,) and one_vox.shape == (16, 16)
    batch_case, batch_vox = label_quality(np.stack(labels), np.stack(probs))
    np.testing.assert_allclose(batch_case[0], one_case[0])
    np.testing.assert_allclose(batch_vox[0], one_vox)
    np.testing.assert_allclose(one_vox, 1 - np.take_along_axis(probs[0], labels[0][None], 0)[0], rtol=1e-6)
    # threshold: suspected (score > 0.5) exactly where p(given) < T(given)
    t = np.array([0.6, 0.3, 0.0])
    _, vox = label_quality(labels, probs, method="threshold", thresholds=t)
    pg = np.take_along_axis(probs[1], labels[1][None], 0)[0]
    np.testing.assert_array_equal(vox[1] > 0.5, pg < t[labels[1]])
    default = class_thresholds(labels, probs)
    assert default.shape == (3,) and np.all((default > 0) & (default < 1))


def test_bad_inputs_are_one_line_errors():
    labels, probs, _ = _planted((8, 8), [0.1])
    with pytest.raises(ConfigError, match="did you mean 'margin'"):
        label_quality(labels, probs, method="margn")
    with pytest.raises(DataError, match="does not match"):
        label_quality([labels[0]], [probs[0][:, :4]])
    with pytest.raises(DataError, match=r"must be in \[0, 1\]"):
        label_quality([labels[0]], [probs[0][:2]])
    with pytest.raises(ConfigError, match="thresholds"):
        label_quality(labels, probs, method="threshold", thresholds=[0.5, 0.5])


def test_auroc_and_average_precision_match_sklearn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    for _ in range(5):
        y = rng.random(500) < 0.2
        s = np.round(rng.random(500) + 0.5 * y, 1)  # many ties
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert np.isnan(auroc(np.zeros(4), np.arange(4))) and np.isnan(average_precision(np.zeros(4), np.arange(4)))


@pytest.fixture(scope="module")
def noisy_mni(mni_small, tmp_path_factory):
    return make_noisy_dataset(mni_small, tmp_path_factory.mktemp("audit") / "noisy", protocol="morph", level=1.0,
                              params={"size_range": (3, 5)}, seed=0, progress=False)


@pytest.fixture(scope="module")
def mni_run(noisy_mni, tmp_path_factory):
    from tests.conftest import tiny_overrides

    out = tmp_path_factory.mktemp("audit_run") / "r"
    api.train(data=noisy_mni, out=out, overrides=tiny_overrides(max_steps=10), progress=False)
    return out


def test_cli_audit_end_to_end_2d(noisy_mni, mni_run, tmp_path):
    out = tmp_path / "a"
    res = runner.invoke(app, ["audit", "--run", str(mni_run), "--data", str(noisy_mni), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "voxel AUROC" in res.output
    ids = sorted(p.name[:-4] for p in (noisy_mni / "imagesTr").iterdir())
    assert sorted(p.name for p in (out / "maps").iterdir()) == [f"{i}.png" for i in ids]
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [int(r["rank"]) for r in rows] == list(range(1, len(ids) + 1))
    scores = [float(r["error_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    summary = json.loads((out / "summary.json").read_text())
    det = summary["detection"]
    assert det["n_cases_with_clean_labels"] == len(ids) and 0 <= det["voxel_auroc"] <= 1
    assert 0 < det["voxel_average_precision"] <= 1
    assert summary["ranking"] == [r["case"] for r in rows]
    report = (out / "report.md").read_text()
    assert "voxel AUROC" in report and "figures/worst_cases.png" in report and rows[0]["case"] in report
    assert (out / "figures" / "worst_cases.png").stat().st_size > 0
    # nothing left behind but the output folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_3d_maps_keep_the_affine_and_mismatched_classes_fail_cleanly(phantom3d, mni_run, tmp_path):
    import nibabel as nib

    over = {"data": {"patch_size": [16, 16, 16], "batch_size": 2},
            "net": {"channels": [4, 8], "features": 4},
            "train": {"max_steps": 3, "val_every": 3, "log_every": 1}}
    api.train(data=phantom3d, out=tmp_path / "r3", method="clcs", overrides=over, progress=False)
    summary = audit(run=tmp_path / "r3", data=phantom3d, out=tmp_path / "a3", progress=False, n_figures=1)
    assert summary["method"] == "self_confidence" and summary["run_method"] == "clcs"  # a continuous ranking
    for src in sorted((phantom3d / "imagesTr").iterdir()):
        m, s = nib.load(str(tmp_path / "a3" / "maps" / src.name)), nib.load(str(src))
        assert m.shape == s.shape and np.allclose(m.affine, s.affine)
        assert m.get_data_dtype() == np.float32 and 0 <= m.get_fdata().min() <= m.get_fdata().max() <= 1
    assert "detection" not in summary  # no clean labels in this dataset
    # a 2D three-class run on the 3D two-class data: one line, exit 2, nothing written
    res = runner.invoke(app, ["audit", "--run", str(mni_run), "--data", str(phantom3d), "--out",
                              str(tmp_path / "bad"), "--quiet"])
    assert res.exit_code == 2
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert "classes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_metadcseg_run_is_audited_with_its_meta_weights(mni_small, tmp_path):
    """A MetaDCSeg run scores labels by where its meta weights move trust to the pseudo-label;
    on labels with planted dilation the wrong pixels must score higher than the right ones."""
    import json as _json

    from noisyseg import api
    from noisyseg.audit import audit
    from noisyseg.noise.apply import make_noisy_dataset
    from tests.conftest import tiny_overrides

    noisy = make_noisy_dataset(mni_small, tmp_path / "noisy", protocol="morph", level=1.0,
                               params={"size_range": (5, 5), "op": "dilate"}, progress=False)
    api.train(data=noisy, out=tmp_path / "run", method="metadcseg", overrides=tiny_overrides(max_steps=30),
              progress=False)
    summary = audit(run=tmp_path / "run", data=noisy, out=tmp_path / "audit", progress=False)
    assert summary["method"] == "meta_weights" and "meta weights" in summary["signal"]
    assert summary["detection"]["voxel_auroc"] > 0.6
    assert _json.loads((tmp_path / "audit" / "summary.json").read_text())["method"] == "meta_weights"
