"""Tests of the robust-loss baselines `gce` and `sce`: the losses against hand-computed
values and their limits, a training step's loss against a manual computation, 2D and 3D
steps, and parameter validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from noisyseg.config import MethodConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, get_method_class, validate_method
from noisyseg.methods.gce import GCE, gce_loss
from noisyseg.methods.losses import one_hot, soft_dice_loss
from noisyseg.methods.sce import SCE, sce_loss, sce_terms

from method_kit import random_batch, tiny_method  # tests/methods helper

K = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def make_method(name: str, params: dict | None = None, dims: int = 2, seed: int = 0):
    return tiny_method(name, params, dims=dims, k=K, seed=seed)


def small_batch(dims: int = 2, n: int = 2, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    return random_batch(dims, n, size, seed, k=K, clean_rows=None)


def two_pixel_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 2, 2, 1) logits with p = (0.25, 0.75) at both pixels; targets 1 then 0."""
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).expand(1, 2, 2, 1).clone()
    return logits, torch.tensor([[[1], [0]]])


# --------------------------------------------------------------------------- GCE


def test_gce_matches_hand_computed_values():
    logits, target = two_pixel_logits()  # p_target = 0.75, 0.25
    got = gce_loss(logits, target, 0.5).flatten()
    torch.testing.assert_close(got, torch.tensor([2 * (1 - math.sqrt(0.75)), 2 * (1 - 0.5)]))
    got = gce_loss(logits, target, 0.7).flatten()
    torch.testing.assert_close(got, torch.tensor([(1 - 0.75**0.7) / 0.7, (1 - 0.25**0.7) / 0.7]))
    assert gce_loss(logits, target, 0.7).shape == (1, 2, 1)


def test_gce_q_one_is_one_minus_p_and_small_q_is_ce():
    logits, target = two_pixel_logits()
    torch.testing.assert_close(gce_loss(logits, target, 1.0).flatten(), torch.tensor([0.25, 0.75]))
    x, y = torch.randn(2, 4, 5, 6) * 3, torch.randint(0, 4, (2, 5, 6))
    ce = F.cross_entropy(x, y, reduction="none")
    torch.testing.assert_close(gce_loss(x, y, 1e-6), ce, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(gce_loss(x, y, 0.7), ce, rtol=1e-2)  # the check above can fail
    p_t = torch.softmax(x, 1).gather(1, y.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(gce_loss(x, y, 1.0), 1 - p_t)
    # bounded by 1/q, also for a pixel with p_target ~ 0
    assert gce_loss(torch.tensor([[[0.0]], [[80.0]]]).view(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long),
                    0.7).item() == pytest.approx(1 / 0.7)


def test_gce_gradient_is_p_to_the_q_times_the_ce_gradient():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = torch.randint(0, 3, (2, 4, 4))
    q = 0.7
    gce_loss(x, y, q).sum().backward()
    g_gce = x.grad.clone()
    x.grad = None
    p_t = torch.softmax(x, 1).gather(1, y.unsqueeze(1)).detach()
    (F.cross_entropy(x, y, reduction="none") * p_t.squeeze(1) ** q).sum().backward()
    torch.testing.assert_close(g_gce, x.grad)


def test_gce_loss_rejects_bad_q():
    logits, target = two_pixel_logits()
    for q in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="q"):
            gce_loss(logits, target, q)


@pytest.mark.parametrize("dice", [False, True])
def test_gce_step_loss_equals_manual(dice):
    m = make_method("gce", {"q": 0.4, "dice": dice})
    batch = small_batch()
    out = m.training_step(batch, StepInfo(step=3, max_steps=10))
    with torch.no_grad():
        p = torch.softmax(m.net(batch["image"]), 1)
        p_t = p.gather(1, batch["label"].unsqueeze(1)).squeeze(1)
        ref = ((1 - p_t**0.4) / 0.4).mean()
        if dice:
            ref = ref + soft_dice_loss(p, one_hot(batch["label"], K))
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert out.logs["loss/gce"] == pytest.approx(((1 - p_t**0.4) / 0.4).mean().item(), rel=1e-5)
    assert ("loss/dice" in out.logs) is dice


# --------------------------------------------------------------------------- SCE


def test_sce_matches_hand_computed_values():
    logits, target = two_pixel_logits()  # p_target = 0.75, 0.25
    a = -math.log(1e-4)
    expected = torch.tensor([0.1 * -math.log(0.75) + 1.0 * a * 0.25, 0.1 * -math.log(0.25) + 1.0 * a * 0.75])
    torch.testing.assert_close(sce_loss(logits, target, 0.1, 1.0).flatten(), expected)
    expected = torch.tensor([2.0 * -math.log(0.75) + 0.5 * a * 0.25, 2.0 * -math.log(0.25) + 0.5 * a * 0.75])
    torch.testing.assert_close(sce_loss(logits, target, 2.0, 0.5).flatten(), expected)


def test_sce_terms_match_the_definitions():
    x, y = torch.randn(2, 4, 3, 5, 2), torch.randint(0, 4, (2, 3, 5, 2))  # 3D
    ce, rce = sce_terms(x, y)
    torch.testing.assert_close(ce, F.cross_entropy(x, y, reduction="none"))
    p = torch.softmax(x, 1)
    torch.testing.assert_close(rce, -(p * torch.log(one_hot(y, 4).clamp(1e-4, 1.0))).sum(1))
    torch.testing.assert_close(sce_loss(x, y, 0.3, 0.6), 0.3 * ce + 0.6 * rce)


@pytest.mark.parametrize("dice", [False, True])
def test_sce_step_loss_equals_manual(dice):
    m = make_method("sce", {"alpha": 0.3, "beta": 0.8, "dice": dice})
    batch = small_batch(seed=1)
    out = m.training_step(batch, StepInfo(step=3, max_steps=10))
    y = batch["label"]
    with torch.no_grad():
        logits = m.net(batch["image"])
        p = torch.softmax(logits, 1)
        ce = F.cross_entropy(logits, y)
        rce = (-math.log(1e-4) * (1 - p.gather(1, y.unsqueeze(1)))).mean()
        ref = 0.3 * ce + 0.8 * rce + (soft_dice_loss(p, one_hot(y, K)) if dice else 0.0)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert out.logs["loss/ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert out.logs["loss/rce"] == pytest.approx(rce.item(), rel=1e-5)


# --------------------------------------------------------------------------- both methods


def test_registered_with_documented_defaults():
    assert get_method_class("gce") is GCE and get_method_class("sce") is SCE
    _, p = validate_method(MethodConfig(name="gce"))
    assert (p.q, p.dice) == (0.7, True)
    _, p = validate_method(MethodConfig(name="sce"))
    assert (p.alpha, p.beta, p.dice) == (1.0, 1.0, False)


@pytest.mark.parametrize("bad", [{"q": 0.0}, {"q": -0.1}, {"q": 1.2}, {"q": "x"}])
def test_gce_params_reject_bad_q(bad):
    with pytest.raises(ConfigError, match="q"):
        validate_method(MethodConfig(name="gce", params=bad))


def test_params_reject_bad_values_and_unknown_keys():
    validate_method(MethodConfig(name="gce", params={"q": 1.0}))  # the upper bound is allowed
    with pytest.raises(ConfigError, match="unknown option"):
        validate_method(MethodConfig(name="gce", params={"Q": 0.5}))
    with pytest.raises(ConfigError, match="alpha"):
        validate_method(MethodConfig(name="sce", params={"alpha": -1.0}))
    with pytest.raises(ConfigError, match="beta"):
        validate_method(MethodConfig(name="sce", params={"beta": -0.1}))
    with pytest.raises(ConfigError, match="no loss"):
        validate_method(MethodConfig(name="sce", params={"alpha": 0.0, "beta": 0.0}))
    validate_method(MethodConfig(name="sce", params={"alpha": 0.0, "beta": 0.0, "dice": True}))


@pytest.mark.parametrize("name", ["gce", "sce"])
def test_losses_are_float32_under_autocast(name):
    m = make_method(name, {"dice": True})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.training_step(small_batch(), StepInfo(step=0, max_steps=10))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
