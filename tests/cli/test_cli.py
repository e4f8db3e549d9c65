"""The command line: every bad input gives one clear line, exit code 2, and no output folder."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from noisyseg.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(res, *needles):
    assert res.exit_code == 2, (res.exit_code, res.output)
    err = res.stderr.strip()
    assert "Traceback" not in res.output + res.stderr
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("cmd", ["train", "predict", "evaluate", "demo", "methods", "noise", "audit", "benchmark"])
def test_every_command_has_help(cmd):
    res = run(cmd, "--help")
    assert res.exit_code == 0 and "Usage" in res.output


def test_misspelt_method_suggests_the_right_one(mni_small, tmp_path):
    res = run("train", "--data", mni_small, "--method", "supervized", "--out", tmp_path / "r")
    assert_one_line_error(res, "unknown method 'supervized'", "did you mean 'supervised'")
    assert not (tmp_path / "r").exists()


def test_missing_data_folder(tmp_path):
    res = run("train", "--data", tmp_path / "nope", "--out", tmp_path / "r")
    assert_one_line_error(res, "nope")
    assert not (tmp_path / "r").exists()


def test_invalid_and_misspelt_config_values(mni_small, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {batch_size: 0}\n")
    assert_one_line_error(run("train", "--data", mni_small, "--out", tmp_path / "r", "--config", bad),
                          "bad.yaml", "data.batch_size")
    bad.write_text("data: {batchsize: 4}\n")
    assert_one_line_error(run("train", "--data", mni_small, "--out", tmp_path / "r", "--config", bad),
                          "unknown option 'data.batchsize'", "did you mean 'batch_size'")
    bad.write_text("method: {name: supervised, params: {tau: 0.9}}\n")
    assert_one_line_error(run("train", "--data", mni_small, "--out", tmp_path / "r", "--config", bad),
                          "method.params.tau")
    assert not (tmp_path / "r").exists()


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_corrupt_png_is_named(mni_small, tmp_path):
    data = _copy(mni_small, tmp_path / "d")
    victim = sorted((data / "labelsTr").iterdir())[0]
    victim.write_bytes(b"not a png at all")
    res = run("train", "--data", data, "--out", tmp_path / "r", "--max-steps", 1)
    assert_one_line_error(res, victim.name)
    assert not (tmp_path / "r").exists()


def test_label_values_outside_the_classes_are_named(mni_small, tmp_path):
    from PIL import Image

    data = _copy(mni_small, tmp_path / "d")
    victim = sorted((data / "labelsTr").iterdir())[1]
    lab = np.array(Image.open(victim))
    lab[0, 0] = 7
    Image.fromarray(lab).save(victim)
    res = run("train", "--data", data, "--out", tmp_path / "r", "--max-steps", 1)
    assert_one_line_error(res, victim.name, "7")
    assert not (tmp_path / "r").exists()


def test_shape_mismatch_is_named(mni_small, tmp_path):
    from PIL import Image

    data = _copy(mni_small, tmp_path / "d")
    victim = sorted((data / "labelsTr").iterdir())[2]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(victim)
    res = run("train", "--data", data, "--out", tmp_path / "r", "--max-steps", 1)
    assert_one_line_error(res, victim.name, "shape")
    assert not (tmp_path / "r").exists()


def test_nan_intensities_are_named(phantom3d, tmp_path):
    import nibabel as nib

    data = _copy(phantom3d, tmp_path / "d")
    victim = sorted((data / "imagesTr").iterdir())[0]
    img = nib.load(str(victim))
    arr = np.asarray(img.dataobj, dtype=np.float32)
    arr[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(arr, img.affine), str(victim))
    res = run("train", "--data", data, "--out", tmp_path / "r", "--max-steps", 1)
    assert_one_line_error(res, victim.name, "NaN")
    assert not (tmp_path / "r").exists()


def test_predict_needs_a_run_and_evaluate_needs_every_prediction(mni_small, tmp_path):
    assert_one_line_error(run("predict", "--run", tmp_path, "--images", mni_small / "imagesTs", "--out", tmp_path / "p"),
                          "not a run folder")
    pred = _copy(mni_small / "labelsTs", tmp_path / "pred")
    missing = sorted(pred.iterdir())[0]
    missing.unlink()
    res = run("evaluate", "--pred", pred, "--truth", mni_small / "labelsTs", "--out", tmp_path / "ev")
    assert_one_line_error(res, missing.name.split(".")[0])
    assert not (tmp_path / "ev").exists()


def test_train_predict_evaluate_end_to_end(mni_small, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {patch_size: [96, 112], batch_size: 2}\nnet: {channels: [8, 16, 32], features: 8}\n"
                   "train: {val_every: 5, log_every: 2}\n")
    res = run("train", "--data", mni_small, "--out", tmp_path / "r", "--config", cfg, "--max-steps", 6, "--quiet")
    assert res.exit_code == 0, res.output
    res = run("predict", "--run", tmp_path / "r", "--images", mni_small / "imagesTs", "--out", tmp_path / "p", "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == sorted(p.name for p in (mni_small / "imagesTs").iterdir())
    res = run("evaluate", "--pred", tmp_path / "p", "--truth", mni_small / "labelsTs", "--out", tmp_path / "ev",
              "--num-classes", 3)
    assert res.exit_code == 0, res.output
    header = (tmp_path / "ev" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "case" and {"dice_1", "dice_2", "hd95_1", "asd_2", "iou_1"} <= set(header)
    assert "dice_0" not in header


def test_methods_lists_every_baseline_with_its_defaults():
    from noisyseg.methods import available_methods, get_method_class

    res = run("methods", "--params")
    assert res.exit_code == 0
    names = set(available_methods())
    assert {"gce", "sce", "coteaching", "trinet", "mtcl", "adele", "l2b", "clcs", "metadcseg"} <= names
    for name in names:
        for field, info in get_method_class(name).Params.model_fields.items():
            assert f"{field} = {info.get_default(call_default_factory=True)!r}" in res.output


def test_version():
    from noisyseg import __version__

    res = run("--version")
    assert res.exit_code == 0 and res.output.strip() == f"noisyseg {__version__}"


def _commands():
    import typer.main

    return typer.main.get_command(app).commands


def test_every_option_has_help_and_every_command_an_example():
    for name, cmd in _commands().items():
        assert f"Example: noisyseg {name}" in (cmd.help or ""), name
        for p in cmd.params:
            assert getattr(p, "help", None), f"{name} {p.opts} has no help text"


def test_help_lists_the_choices_from_the_registries():
    from noisyseg.api import CHECKPOINTS, SPLITS
    from noisyseg.audit import AUDIT_METHODS, CASE_SCORES
    from noisyseg.methods import available_methods
    from noisyseg.noise.registry import MODEL_PROTOCOLS, PROTOCOLS

    expect = {"train": available_methods(), "noise": list(PROTOCOLS) + list(MODEL_PROTOCOLS),
              "predict": list(CHECKPOINTS) + list(SPLITS), "evaluate": list(SPLITS) + ["monai", "medpy"],
              "audit": list(AUDIT_METHODS) + list(CASE_SCORES) + list(CHECKPOINTS),
              "demo": ["mni", "phantom3d"] + list(PROTOCOLS), "benchmark": available_methods()}
    for cmd, choices in expect.items():
        out = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "300"}).output
        missing = [c for c in choices if c not in out]
        assert not missing, (cmd, missing)


def test_readme_agrees_with_the_help():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in _commands():
        assert f"noisyseg {name}" in readme, name
    quick = next(p for p in _commands()["demo"].params if p.name == "quick").help
    claim = quick[quick.index("(") + 1: quick.index(" on ")]  # e.g. "under 3 minutes"
    assert f"`noisyseg demo --quick` in {claim}" in readme.replace("\n", " ")
