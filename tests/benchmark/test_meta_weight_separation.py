"""benchmarks/meta_weight_separation.py: the per-class counts it reports, by hand."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from noisyseg.audit import auroc

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "meta_weight_separation.py"


def _module():
    spec = importlib.util.spec_from_file_location("meta_weight_separation", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_class_rows_by_hand():
    # given labels: class 1 on the first four pixels, of which the last two are wrong (clean 0)
    label = torch.tensor([[1, 1, 1, 1, 0, 0]])
    clean = torch.tensor([[1, 1, 0, 0, 0, 0]])
    raw = torch.tensor([[0.5, -0.1, 0.9, 0.2, -1.0, 0.3]])
    alpha = torch.tensor([[0.1, 0.0, 0.3, 0.1, 0.0, 0.0]])
    p_given = torch.tensor([[0.9, 0.8, 0.2, 0.4, 0.9, 0.9]])
    rows = _module().class_rows(raw, alpha, p_given, label, clean, 2)
    r = rows[1]
    assert r["right_pos"] == pytest.approx(0.5) and r["wrong_pos"] == pytest.approx(1.0)
    assert r["alpha_right"] == pytest.approx(0.05 * 6) and r["alpha_wrong"] == pytest.approx(0.2 * 6)
    assert r["truth"].tolist() == [False, False, True, True]
    # the loss ranks both wrong labels above both right ones; −raw puts one wrong label lowest
    assert auroc(r["truth"], r["loss"]) == pytest.approx(1.0)
    assert auroc(r["truth"], r["meta"]) == pytest.approx(0.25)
    assert np.isnan(rows[0]["wrong_pos"])  # class 0 has no wrong labels


def test_a_missing_or_weights_only_checkpoint_is_refused_in_one_line(tmp_path):
    """best.pt holds the weights only (the script resumes the run, which needs last.pt)."""
    mod = _module()
    best = tmp_path / "best.pt"
    torch.save({"method": {}, "step": 3}, best)
    for path, words in ((best, "weights only"), (tmp_path / "none.pt", "not found")):
        with pytest.raises(SystemExit) as exc:
            mod.main(["--checkpoint", str(path), "--data", str(tmp_path), "--trusted", str(tmp_path / "t.txt")])
        assert str(path) in str(exc.value) and words in str(exc.value) and "\n" not in str(exc.value)
