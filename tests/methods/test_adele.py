"""ADELE: early-learning detection on synthetic IoU curves, label correction, state round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noisyseg.config import MethodConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, validate_method
from noisyseg.methods.adele import (
    correct_labels,
    early_learning_ended,
    fit_saturation_curve,
    intersection_union,
    relative_slope_change,
    saturation_curve,
)

from method_kit import band_batch, tiny_method  # tests/methods helper


def first_detection(curve, **kw) -> int | None:
    """The last index of the shortest prefix on which early learning has ended."""
    return next((n - 1 for n in range(3, len(curve) + 1) if early_learning_ended(curve[:n], **kw)), None)


# --------------------------------------------------------------------------- detection


def test_fit_recovers_a_saturating_curve():
    x = np.arange(30.0)
    y = saturation_curve(x, 0.8, 0.7, 4.0)
    a, b, c = fit_saturation_curve(y)
    np.testing.assert_allclose(saturation_curve(x, a, b, c), y, atol=1e-3)


def test_detects_a_saturating_curve_near_its_knee():
    """0.8(1 − e^(−x/5)): the fitted slope falls to 1/10 of f'(1) at x = 1 + 5 ln 10 ≈ 12.5."""
    x = np.arange(40.0)
    y = 0.8 * (1 - np.exp(-x / 5))
    assert first_detection(y) == 13
    noisy = np.clip(y + np.random.default_rng(0).normal(0, 0.02, len(y)), 0, 1)
    assert 10 <= first_detection(noisy) <= 16
    slower = 0.9 * (1 - np.exp(-x / 10))  # 1 + 10 ln 10 ≈ 24
    assert first_detection(slower) in (24, 25, 26)


def test_no_detection_on_linear_rising_curves():
    x = np.arange(50.0)
    assert first_detection(0.01 * x) is None
    assert first_detection(0.018 * x) is None
    for seed in range(5):
        noisy = np.clip(0.015 * x + np.random.default_rng(seed).normal(0, 0.02, len(x)), 0, 1)
        assert first_detection(noisy) is None, seed
    assert relative_slope_change(0.01 * x) < 0.9


def test_leading_plateau_is_trimmed_and_nan_points_skipped():
    x = np.arange(40.0)
    y = np.where(x < 8, 0.0, 0.8 * (1 - np.exp(-(x - 8) / 4)))
    det = first_detection(y)
    assert det is not None and 8 + 1 + 4 * math.log(10) - 2 <= det <= 8 + 1 + 4 * math.log(10) + 2
    gappy = 0.8 * (1 - np.exp(-x / 5))
    gappy[[3, 7, 20]] = np.nan
    assert first_detection(gappy) in (12, 13, 14)
    assert not early_learning_ended([0.1, 0.5, np.nan], min_points=3)  # too few usable points


# --------------------------------------------------------------------------- correction


def probs_from(pred: torch.Tensor, conf: torch.Tensor, k: int) -> torch.Tensor:
    """(N, K, *S) with probability `conf` on `pred` and the rest spread evenly."""
    oh = torch.nn.functional.one_hot(pred, k).movedim(-1, 1).float()
    rest = ((1 - conf) / (k - 1)).unsqueeze(1)
    return oh * conf.unsqueeze(1) + (1 - oh) * rest


def test_correct_labels_only_changes_active_classes_above_threshold():
    g = torch.Generator().manual_seed(0)
    k = 4
    label = torch.randint(0, k, (3, 12, 12), generator=g)
    label[:, 0, 0] = torch.tensor([0, 1, 2])  # every class present somewhere
    label[:, 0, 1] = 3
    pred = torch.randint(0, k, (3, 12, 12), generator=g)
    conf = 0.5 + 0.5 * torch.rand(3, 12, 12, generator=g)
    probs = probs_from(pred, conf, k)
    active = torch.tensor([True, False, True, False])
    out = correct_labels(probs, label, active, threshold=0.8)
    changed = out != label
    expected = (conf > 0.8) & active[pred] & active[label] & (pred != label)
    assert torch.equal(changed, expected) and changed.any()
    assert torch.equal(out[changed], pred[changed])
    assert torch.equal(correct_labels(probs, label, torch.zeros(k, dtype=torch.bool), 0.8), label)
    assert torch.equal(correct_labels(probs, label, torch.ones(k, dtype=torch.bool), 1.0), label)


def test_class_constraint_keeps_absent_classes_out():
    label = torch.zeros(2, 4, 4, dtype=torch.long)
    label[0, :2] = 1  # sample 0 has class 1, sample 1 has only background
    pred = torch.ones_like(label)
    probs = probs_from(pred, torch.full(label.shape, 0.95), 2)
    active = torch.tensor([True, True])
    out = correct_labels(probs, label, active, 0.8)
    assert (out[0] == 1).all() and (out[1] == 0).all()
    out = correct_labels(probs, label, active, 0.8, class_constraint=False)
    assert (out == 1).all()


def test_intersection_union_by_hand():
    pred = torch.tensor([[0, 1, 1, 2]])
    label = torch.tensor([[0, 1, 2, 2]])
    inter, union = intersection_union(pred, label, 3)
    assert inter.tolist() == [1, 1, 1] and union.tolist() == [1, 2, 2]


# --------------------------------------------------------------------------- the method


def make_method(dims=2, k=2, **params):
    return tiny_method("adele", params, dims=dims, k=k, train=True)


batch_for = band_batch

def test_params_validation():
    cls, p = validate_method(MethodConfig(name="adele"))
    assert cls.name == "adele" and p.r == 0.9 and p.conf_threshold == 0.8 and p.min_points == 10
    with pytest.raises(ConfigError, match="min_points"):
        validate_method(MethodConfig(name="adele", params={"curve_points": 5, "min_points": 8}))
    with pytest.raises(ConfigError):
        validate_method(MethodConfig(name="adele", params={"r": 1.0}))


@pytest.mark.parametrize("dims,k", [(2, 2), (3, 3)])
def test_training_step_logs_2d_3d(dims, k):  # loss and gradients: test_contract.py
    method = make_method(dims, k, tta_flip=True)
    batch = batch_for(dims, k, size=16 if dims == 2 else 8)
    out = method.training_step(batch, StepInfo(0, 10))
    for key in ["adele/corrected_frac", "adele/label_acc_given", "adele/label_acc_corrected",
                "adele/correction_precision"] + [f"adele/active/c{c}" for c in range(1, k)]:
        assert key in out.logs, key
    assert out.logs["adele/corrected_frac"] == 0.0  # nothing is active yet
    bn = torch.nn.BatchNorm2d if dims == 2 else torch.nn.BatchNorm3d
    assert {int(m.num_batches_tracked) for m in method.modules() if isinstance(m, bn)} == {1}


def test_curve_recording_and_detection_activate_correction():
    method = make_method(curve_points=20, min_points=5)
    batch = batch_for()
    info = StepInfo(0, 40)  # 2 steps per curve point
    method.training_step(batch, info)
    assert int(method.record_interval) == 2 and int(method.num_points) == 0
    method.training_step(batch, StepInfo(1, 40))
    assert int(method.num_points) == 1 and math.isfinite(float(method.iou_curve[0, 1]))
    assert int(method.inter_sum.sum()) == 0  # the interval's sums were reset
    # plant a saturated history for class 1 and close one more interval
    x = torch.arange(14, dtype=torch.float32)
    method.iou_curve[:14, 1] = 0.8 * (1 - torch.exp(-x / 3))
    method.num_points.fill_(14)
    method.training_step(batch, StepInfo(2, 40))
    assert not bool(method.active[1])
    # the interval's sums dwarf one batch: the 15th point is ≈ 0.8 · (1 − e^(−14/3))
    method.inter_sum[1] = 787_000_000
    method.union_sum[1] = 1_000_000_000
    method.training_step(batch, StepInfo(3, 40))
    assert float(method.iou_curve[14, 1]) == pytest.approx(0.787, abs=1e-3)
    assert bool(method.active[1]) and int(method.detected_step[1]) == 3
    assert method.correction_classes().tolist() == [True, True]
    # with a confident network every label disagreeing with the prediction is corrected
    with torch.no_grad():
        method.net.head.bias.copy_(torch.tensor([-20.0, 20.0]))  # predicts foreground everywhere
    out = method.training_step(batch, StepInfo(4, 40))
    assert out.logs["adele/corrected_frac"] == pytest.approx(float((batch["label"] == 0).float().mean()))


def test_buffers_round_trip_through_state_dict():
    method = make_method(curve_points=20, min_points=5)
    batch = batch_for()
    for i in range(5):
        method.training_step(batch, StepInfo(i, 40))
    method.active[1] = True
    method.detected_step[1] = 3
    state = {k: v.clone() for k, v in method.state_dict().items()}
    for key in ("iou_curve", "num_points", "inter_sum", "union_sum", "active", "detected_step", "record_interval"):
        assert key in state, key
    other = make_method(curve_points=20, min_points=5)
    other.training_step(batch, StepInfo(0, 1000))  # caches a different interval (50)
    assert other.interval(1000) == 50
    other.load_state_dict(state)
    for key, value in state.items():
        got = other.state_dict()[key]
        assert torch.equal(got, value) or (got.is_floating_point() and torch.equal(got.isnan(), value.isnan())
                                           and torch.equal(got.nan_to_num(), value.nan_to_num())), key
    assert other.interval(1000) == 2  # the cached interval was refreshed from the loaded buffer
    assert other.correction_classes().tolist() == [True, True]
