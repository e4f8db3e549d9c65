"""`noisyseg demo --quick`, the README's main job, end to end."""

import json

import pytest
from typer.testing import CliRunner

from noisyseg.cli import app


@pytest.mark.slow
def test_quick_demo_prints_the_table_and_writes_figures(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    table = [l for l in res.output.splitlines() if l.startswith("| ")]
    assert [l.split("|")[1].strip() for l in table[1:]] == ["supervised (clean labels)", "supervised", "clcs", "metadcseg"]
    summary = json.loads((out / "summary.json").read_text())
    clean = summary["results"]["supervised (clean labels)"]["metrics"]
    assert clean["dice_1"]["mean"] > 0.6 and clean["dice_2"]["mean"] > 0.6  # it learned real anatomy
    for name in ("test_predictions.png", "training_labels_clean_vs_noisy.png", "validation_curves.png", "test_dice.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    assert (out / "runs" / "clcs" / "figures" / "clcs_curves.png").is_file()
    assert (out / "runs" / "metadcseg" / "figures" / "metadcseg_weight_maps.png").is_file()


def test_demo_refuses_a_non_empty_folder_and_unknown_methods(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep me")
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not empty" in res.stderr
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "y"), "--methods", "clsc"])
    assert res.exit_code == 2 and "did you mean 'clcs'" in res.stderr and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_demo_runs_a_model_based_noise_protocol_by_name(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--quiet", "--noise", "pseudo",
                                   "--methods", "supervised"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "data" / "noisy_pseudo" / "noise_summary.json").read_text())
    assert summary["protocol"] == "pseudo" and summary["mean_noise_level_corrupted"] > 0
