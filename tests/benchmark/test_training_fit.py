"""benchmarks/training_fit.py: its per-case numbers and per-noise medians, by hand."""

import math

import numpy as np
import pytest

import bench_script


def _module():
    return bench_script.load("training_fit")


def test_fit_row_by_hand():
    clean = np.array([0, 1, 1, 1, 1, 0, 0, 0])
    given = np.array([0, 0, 1, 1, 0, 0, 0, 0])  # eroded
    pred = np.array([0, 0, 2, 1, 1, 1, 0, 0])  # class 2 counts as foreground
    r = _module().fit_row(pred, given, clean)
    assert r["dice_clean"] == pytest.approx(2 * 3 / (4 + 4))
    assert r["dice_given"] == pytest.approx(2 * 2 / (4 + 2))
    assert r["volume_ratio"] == pytest.approx(1.0)
    assert math.isnan(_module().fit_row(pred, given, np.zeros(8, int))["volume_ratio"])


def test_noise_ops_and_group_medians(tmp_path):
    report = tmp_path / "noise_report.csv"
    report.write_text('case,corrupted,operation\n'
                      'a,1,"{""op"": ""erode"", ""size"": 9}"\n'
                      'b,0,"{""protocol"": ""none""}"\n'
                      'c,1,"{""op"": ""erode"", ""size"": 3}"\n'
                      'd,1,"{""protocol"": ""sfda"", ""seed"": 0}"\n')
    mod = _module()
    ops = mod.noise_ops(report)
    assert ops == {"a": "erode", "b": "none", "c": "erode", "d": "sfda"}
    rows = [{"op": ops[c], "dice_clean": d, "dice_given": g, "volume_ratio": v}
            for c, d, g, v in (("a", 0.8, 0.5, 0.9), ("b", 0.9, 0.9, 1.0), ("c", 0.6, 0.7, 1.3))]
    m = mod.group_medians(rows)
    assert m["erode"] == {"cases": 2, "dice_clean": pytest.approx(0.7), "dice_given": pytest.approx(0.6),
                          "volume_ratio": pytest.approx(1.1)}
    assert m["none"]["cases"] == 1 and m["none"]["dice_clean"] == pytest.approx(0.9)


def test_a_folder_without_noise_report_or_a_missing_run_is_refused_in_one_line(tmp_path, mni_small):
    with pytest.raises(SystemExit) as exc:
        _module().main(["--data", str(tmp_path), str(tmp_path / "run")])
    msg = str(exc.value)
    assert "noise_report.csv" in msg and str(tmp_path) in msg and "\n" not in msg
    (mni_small / "noise_report.csv").write_text("case,corrupted,operation\n")
    try:
        with pytest.raises(SystemExit) as exc:
            _module().main(["--data", str(mni_small), str(tmp_path / "no_run")])
    finally:
        (mni_small / "noise_report.csv").unlink()
    msg = str(exc.value)
    assert str(tmp_path / "no_run") in msg and "\n" not in msg
