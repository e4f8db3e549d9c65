"""benchmarks/meta_weight_separation.py: the per-class counts it reports, by hand."""

import numpy as np
import pytest
import torch

from noisyseg.audit import auroc

import bench_script


def _module():
    return bench_script.load("meta_weight_separation")


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


def test_a_missing_or_weights_only_checkpoint_or_missing_data_is_refused_in_one_line(tmp_path):
    """best.pt holds the weights only (the script resumes the run, which needs last.pt)."""
    mod = _module()
    best = tmp_path / "best.pt"
    torch.save({"method": {}, "step": 3}, best)
    for path, words in ((best, "weights only"), (tmp_path / "none.pt", "not found")):
        with pytest.raises(SystemExit) as exc:
            mod.main(["--checkpoint", str(path), "--data", str(tmp_path), "--trusted", str(tmp_path / "t.txt")])
        assert str(path) in str(exc.value) and words in str(exc.value) and "\n" not in str(exc.value)
    last = tmp_path / "last.pt"
    torch.save({"method": {}, "optimizer": {}, "step": 3, "config": {"method": {"name": "metadcseg"}}}, last)
    with pytest.raises(SystemExit) as exc:  # a data folder that is not there
        mod.main(["--checkpoint", str(last), "--data", str(tmp_path / "nodata"), "--trusted", str(tmp_path / "t.txt")])
    assert str(tmp_path / "nodata") in str(exc.value) and "\n" not in str(exc.value)


def test_decision_counts_by_hand():
    # pixels 0-3: given and pseudo differ; the larger raw weight picks the given label on 0 and 2
    label = torch.tensor([[1, 0, 1, 0, 1, 0]])
    pseudo = torch.tensor([[0, 1, 0, 1, 1, 0]])
    clean = torch.tensor([[1, 1, 0, 0, 1, 0]])
    raw_real = torch.tensor([[0.5, -0.2, 0.3, 0.0, 0.1, 0.1]])
    raw_pseudo = torch.tensor([[-0.5, 0.2, -0.3, 0.4, 0.1, 0.1]])
    c = _module().decision_counts(raw_real, raw_pseudo, label, pseudo, clean)
    # picks: 1 (clean 1), 1 (clean 1), 1 (clean 0), 1 (clean 0); the given label is clean on 0 and 3
    assert c == {"pixels": 6, "differ": 4, "pick_clean": 2, "given_clean": 2, "pick_fg": 4}


def test_another_methods_checkpoint_becomes_the_scored_methods():
    """`--method`: the network's weights are kept, the scored method's own state is added."""
    from types import SimpleNamespace

    from noisyseg.config import RunConfig
    from noisyseg.engine.setup import build_method

    cfg = RunConfig.model_validate({"data": {"spatial_dims": 2}, "net": {"channels": [4, 8], "features": 4},
                                    "method": {"name": "supervised"}})
    dataset = SimpleNamespace(in_channels=1, num_classes=2)
    sup = build_method(cfg, 1, 2, 2)
    with torch.no_grad():
        for p in sup.parameters():
            p.add_(1.0)  # differs from any fresh initialisation
    state = {"config": cfg.model_dump(mode="json"), "method": sup.state_dict()}
    _module()._as_method(state, "metadcseg", {"meta_loss": "ce"}, dataset)
    assert state["config"]["method"] == {"name": "metadcseg", "params": {"meta_loss": "ce"}}
    assert "centers" in state["method"]
    for k, v in sup.state_dict().items():
        assert torch.equal(state["method"][k], v)
    mdc = build_method(RunConfig.model_validate(state["config"]), 1, 2, 2)
    mdc.load_state_dict(state["method"])  # complete: a strict load succeeds
