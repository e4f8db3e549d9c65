"""MTCL: torch confident learning against cleanlab, planted label errors, the EMA teacher."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from noisyseg.config import MethodConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, validate_method
from noisyseg.methods.mtcl import (
    calibrate_confident_joint,
    class_counts,
    confident_joint,
    confident_thresholds,
    ema_decay_at,
    find_label_issues,
    round_preserving_row_totals,
    sigmoid_rampup,
)

from method_kit import band_batch, tiny_method  # tests/methods helper

MODES = ["both", "prune_by_noise_rate", "prune_by_class", "confident_learning"]


def noisy_classification(seed: int, m: int, k: int, dtype=np.float64):
    """Given labels with 5-40 % symmetric noise and probabilities leaning to the true class."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, m)
    noisy = np.where(rng.random(m) < rng.uniform(0.05, 0.4), rng.integers(0, k, m), true)
    logits = rng.normal(size=(m, k)) * rng.uniform(0.5, 3) + np.eye(k)[true] * rng.uniform(0, 4)
    probs = np.exp(logits)
    return noisy, (probs / probs.sum(1, keepdims=True)).astype(dtype)


# --------------------------------------------------------------------------- against cleanlab


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_flags_equal_cleanlab(mode, dtype):
    """Same pixels as cleanlab 2.9's find_label_issues, for every mode, on random batches."""
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    total = 0
    for seed, (m, k) in enumerate([(3000, 2), (2500, 3), (1200, 5), (800, 4), (40_000, 2)]):
        labels, probs = noisy_classification(seed, m, k, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = cleanlab_filter.find_label_issues(labels, probs, filter_by=mode, n_jobs=1)
        got = find_label_issues(torch.from_numpy(probs), torch.from_numpy(labels), mode).numpy()
        assert np.array_equal(got, ref), (seed, int((got != ref).sum()), int(ref.sum()))
        total += int(ref.sum())
    assert total > 100  # the comparison is not between two empty sets


def test_intermediate_counts_equal_cleanlab():
    count = pytest.importorskip("cleanlab.count")
    labels, probs = noisy_classification(7, 2000, 4)
    p, y = torch.from_numpy(probs), torch.from_numpy(labels)
    np.testing.assert_allclose(confident_thresholds(p, y).numpy(), count.get_confident_thresholds(labels, probs),
                               rtol=1e-12)
    cj, _, _ = confident_joint(p, y)
    ref = count.compute_confident_joint(labels, probs)  # calibrated
    got = calibrate_confident_joint(cj, class_counts(y, 4))
    assert np.array_equal(got.numpy().astype(int), ref)
    assert np.array_equal(got.sum(1).numpy(), np.bincount(labels, minlength=4))
    raw = count.compute_confident_joint(labels, probs, calibrate=False)
    assert np.array_equal(cj.numpy(), raw)


def test_row_rounding_keeps_totals():
    x = torch.tensor([[0.5, 0.5, 1.0], [1.4, 1.4, 1.2], [2.6, 0.2, 0.2]], dtype=torch.float64)
    r = round_preserving_row_totals(x)
    assert r.sum(1).tolist() == [2.0, 4.0, 3.0]
    assert (r - x).abs().max() < 1.0
    assert r[2].tolist() == [3.0, 0.0, 0.0]


def test_constant_probabilities_over_many_pixels():
    """Thresholds of identical float32 values over 10⁵ pixels stay exact (float64 sums), so
    every pixel is confident and the two wrong labels are found."""
    label = torch.zeros(100_000, dtype=torch.long)
    label[:30_000] = 1
    true = label.clone()
    label[[5, 50_000]] = 1 - label[[5, 50_000]]
    probs = torch.nn.functional.one_hot(true, 2).float() * 0.9 + 0.05
    for mode in MODES:
        assert find_label_issues(probs, label, mode).nonzero().squeeze(1).tolist() == [5, 50_000], mode


def test_works_on_label_maps():
    labels, probs = noisy_classification(3, 2 * 8 * 8 * 4, 3)
    p = torch.from_numpy(probs).reshape(2, 8, 8, 4, 3).movedim(-1, 1)  # (N, K, X, Y, Z)
    y = torch.from_numpy(labels).reshape(2, 8, 8, 4)
    flags = find_label_issues(p, y)
    assert flags.shape == y.shape and flags.dtype == torch.bool
    flat = find_label_issues(torch.from_numpy(probs), torch.from_numpy(labels))
    assert torch.equal(flags.reshape(-1), flat)


# --------------------------------------------------------------------------- planted errors


@pytest.mark.parametrize("mode", MODES)
def test_planted_wrong_pixels_are_flagged(mode):
    """A 2-class map: the teacher is right everywhere; 10 given labels are wrong. The teacher is
    surest at the planted pixels (above the per-class thresholds, so the confident joint counts
    them all: a wrong pixel predicted below its class's mean confidence is not counted)."""
    g = torch.Generator().manual_seed(0)
    true = torch.zeros(1, 16, 16, dtype=torch.long)
    true[0, 4:12, 4:12] = 1
    label = true.clone()
    planted = torch.zeros_like(true, dtype=torch.bool)
    planted[0, 0, :6] = True  # background labelled foreground
    planted[0, 6, 6:10] = True  # foreground labelled background
    label[planted] = 1 - label[planted]
    conf = 0.8 + 0.1 * torch.rand(1, 16, 16, generator=g)  # teacher confidence in the true class
    conf[planted] = 0.95 + 0.04 * torch.rand(int(planted.sum()), generator=g)
    p1 = torch.where(true == 1, conf, 1 - conf)
    probs = torch.stack([1 - p1, p1], 1)
    flags = find_label_issues(probs, label, mode)
    assert torch.equal(flags, planted)


# --------------------------------------------------------------------------- the method


def make_method(dims=2, k=2, **params):
    return tiny_method("mtcl", params, dims=dims, k=k, train=True)


batch_for = band_batch

def test_params_defaults_and_validation():
    cls, p = validate_method(MethodConfig(name="mtcl"))
    assert cls.name == "mtcl" and not cls.needs_trusted
    assert p.ema_decay == 0.99 and p.consistency_weight == 0.1 and p.cl_filter == "both"
    with pytest.raises(ConfigError):
        validate_method(MethodConfig(name="mtcl", params={"cl_filter": "nope"}))
    with pytest.raises(ConfigError):
        validate_method(MethodConfig(name="mtcl", params={"ema_decay": 1.5}))


def test_ramp_and_ema_decay():
    assert sigmoid_rampup(0.0, 1.0) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.5, 1.0) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(2.0, 1.0) == 1.0 and sigmoid_rampup(0.0, 0.0) == 1.0
    assert ema_decay_at(0, 0.99) == 0.0 and ema_decay_at(1, 0.99) == 0.5 and ema_decay_at(10**6, 0.99) == 0.99


@pytest.mark.parametrize("dims,k", [(2, 2), (3, 3)])
def test_training_step_terms_and_teacher_2d_3d(dims, k):
    method = make_method(dims, k, cl_start=0.0, cl_start_agreement=0.0)
    batch = batch_for(dims, k, size=16 if dims == 2 else 8)
    out = method.training_step(batch, StepInfo(5, 10))
    out.loss.backward()  # finiteness, gradients and probabilities: the contract (test_contract.py)
    for key in ("mtcl/flagged_frac", "loss/sup", "loss/corr", "loss/cons", "mtcl/flag_precision",
                "mtcl/flag_recall", "mtcl/correction_acc", "mtcl/threshold/c1"):
        assert key in out.logs, key
    w = out.logs["mtcl/cons_weight"]
    total = out.logs["loss/sup"] + out.logs["loss/corr"] + w * out.logs["loss/cons"]
    assert out.loss.item() == pytest.approx(total, rel=1e-5)
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())


def test_flagged_pixels_are_trained_on_the_teacher_label():
    """With the teacher set to a perfect predictor, the wrong band is flagged and corrected."""
    method = make_method(cl_start=0.0, cl_start_agreement=0.0, consistency_weight=0.0)
    batch = batch_for()
    clean = batch["clean_label"]
    perfect = torch.nn.functional.one_hot(clean, 2).movedim(-1, 1).float() * 0.9 + 0.05
    method.teacher_probs = lambda x: perfect  # the teacher's softmax, as CL sees it
    out = method.training_step(batch, StepInfo(5, 10))
    assert out.logs["mtcl/flag_precision"] == 1.0 and out.logs["mtcl/flag_recall"] == 1.0
    assert out.logs["mtcl/correction_acc"] == 1.0
    wrong = batch["label"] != clean
    assert out.logs["mtcl/flagged_frac"] == pytest.approx(float(wrong.float().mean()))
    # L_corr by hand: CE of the student against the teacher label on flagged pixels, over all pixels
    with torch.no_grad():
        logp = torch.log_softmax(method.net(batch["image"]).float(), 1)
        corr = -(logp.gather(1, clean.unsqueeze(1)).squeeze(1) * wrong).sum() / wrong.numel()
    assert out.logs["loss/corr"] == pytest.approx(corr.item(), rel=1e-5)


def test_warmup_skips_confident_learning():
    method = make_method(cl_start=0.5)
    out = method.training_step(batch_for(), StepInfo(1, 10))
    assert out.logs["mtcl/flagged_frac"] == 0.0 and out.logs["loss/corr"] == 0.0
    assert math.isnan(out.logs["mtcl/threshold/c0"])


def test_confident_learning_waits_until_the_teacher_finds_every_class():
    """The gate opens when the running agreement of a perfect teacher reaches 0.5 and stays open (also through the state dict); a teacher that misses the class never opens it."""
    batch = batch_for()
    clean = batch["clean_label"]
    perfect = torch.nn.functional.one_hot(clean, 2).movedim(-1, 1).float() * 0.9 + 0.05
    blind = torch.stack([torch.full_like(clean, 0.9, dtype=torch.float32), torch.full_like(clean, 0.1, dtype=torch.float32)], 1)
    method = make_method(cl_start=0.0, cl_start_agreement=0.5, consistency_weight=0.0)
    method.teacher_probs = lambda x: blind
    for i in range(20):
        out = method.training_step(batch, StepInfo(i, 20))
        assert out.logs["mtcl/flagged_frac"] == 0.0 and out.logs["mtcl/agreement"] == 0.0
    method = make_method(cl_start=0.0, cl_start_agreement=0.5, consistency_weight=0.0)
    method.teacher_probs = lambda x: perfect
    flagged = [method.training_step(batch, StepInfo(i, 20)).logs["mtcl/flagged_frac"] for i in range(12)]
    wrong = float((batch["label"] != clean).float().mean())
    # the teacher agrees with the given labels by a Dice a < 1 (the wrong band); step i folds in
    # its agreement before deciding, so CL starts at the first i with a·(1 − 0.9^(i+1)) ≥ 0.5
    a = 2 * ((clean == 1) & (batch["label"] == 1)).sum().item() / ((clean == 1).sum() + (batch["label"] == 1).sum()).item()
    first = next(i for i in range(12) if a * (1 - 0.9 ** (i + 1)) >= 0.5)
    assert 5 < first < 11
    assert flagged[:first] == [0.0] * first and flagged[first:] == pytest.approx([wrong] * (12 - first))
    reloaded = make_method(cl_start=0.0, cl_start_agreement=0.5, consistency_weight=0.0)
    reloaded.load_state_dict(method.state_dict())
    reloaded.teacher_probs = lambda x: blind
    assert reloaded.cl_active(StepInfo(0, 20))


def test_teacher_ema_equals_hand_formula_and_gets_no_gradient():
    method = make_method(cl_start=0.0, cl_start_agreement=0.0, ema_decay=0.9)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    n_student = sum(1 for _ in method.net.parameters())
    assert len(opt.param_groups[0]["params"]) == n_student  # the teacher is not optimised
    batch = batch_for()

    def step(i):
        untouched = {k: v.clone() for k, v in method.teacher.state_dict().items()}
        out = method.training_step(batch, StepInfo(i, 100))
        # the teacher's own forwards leave its state (running statistics included) as it was
        for k, v in method.teacher.state_dict().items():
            assert torch.equal(v, untouched[k]), k
        opt.zero_grad()
        out.loss.backward()
        assert all(p.grad is None for p in method.teacher.parameters())
        opt.step()
        before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
        method.after_step(StepInfo(i, 100))
        return before

    step(0)  # α = 0: the teacher becomes the student
    for (kt, vt), (ks, vs) in zip(method.teacher.state_dict().items(), method.net.state_dict().items()):
        assert kt == ks and torch.equal(vt, vs), kt
    for i in (1, 20):
        before = step(i)
        alpha = min(1 - 1 / (i + 1), 0.9)
        student = method.net.state_dict()
        for key, value in method.teacher.state_dict().items():
            if value.is_floating_point():
                torch.testing.assert_close(value, alpha * before[key] + (1 - alpha) * student[key])
            else:
                assert torch.equal(value, student[key]), key  # num_batches_tracked copied
    assert any(k.startswith("teacher.") for k in method.state_dict())


def test_inference_network_choice():
    method = make_method(inference="teacher")
    with torch.no_grad():
        for p in method.teacher.parameters():
            p.add_(0.5)
    x = batch_for()["image"]
    method.eval()
    torch.testing.assert_close(method.predict_proba(x), torch.softmax(method.teacher(x), 1))
    method.params = method.params.model_copy(update={"inference": "student"})
    torch.testing.assert_close(method.predict_proba(x), torch.softmax(method.net(x), 1))
