"""Tests of Tri-network: the agreement + small-loss selection against a hand example, that
network i's pixels depend only on networks j and k, the step's loss and gradients against
a manual computation, warm-up, logs, 3D, and state round trip."""

from __future__ import annotations

import pytest
import torch

from noisyseg.config import MethodConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, get_method_class, validate_method
from noisyseg.methods.coteaching import small_loss_mask
from noisyseg.methods.losses import one_hot, pixel_ce, soft_dice_loss, weighted_mean
from noisyseg.methods.trinet import PEERS, TriNet, agreement_small_loss_mask

from method_kit import grads, random_batch, tiny_method  # tests/methods helper

K = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def make_method(params: dict | None = None, dims: int = 2, seed: int = 0):
    return tiny_method("trinet", params, dims=dims, k=K, seed=seed)


def small_batch(dims: int = 2, n: int = 2, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    return random_batch(dims, n, size, seed, k=K)


def forward_all(m: TriNet, x: torch.Tensor, y: torch.Tensor):
    logits = [net(x) for net in m.nets]
    return logits, [pixel_ce(lg, y) for lg in logits], [lg.detach().argmax(1) for lg in logits]


# --------------------------------------------------------------------------- the selection


def test_agreement_small_loss_hand_example():
    pred_j = torch.tensor([0, 1, 1, 0, 1, 0])
    pred_k = torch.tensor([0, 1, 0, 0, 1, 1])  # agree at 0, 1, 3, 4
    loss_j = torch.tensor([0.3, 0.9, 0.0, 0.1, 0.4, 0.0])
    loss_k = torch.tensor([0.1, 0.7, 0.0, 0.1, 0.6, 0.0])  # means 0.2, 0.8, -, 0.1, 0.5, -
    # the disagreed pixels have the smallest loss but are never selected
    assert agreement_small_loss_mask(loss_j, loss_k, pred_j, pred_k, 0.5).tolist() == \
        [True, False, False, True, False, False]  # round(0.5 * 4) = 2: 0.1 and 0.2
    assert agreement_small_loss_mask(loss_j, loss_k, pred_j, pred_k, 0.75).tolist() == \
        [True, False, False, True, True, False]
    assert agreement_small_loss_mask(loss_j, loss_k, pred_j, pred_k, 1.0).tolist() == (pred_j == pred_k).tolist()
    # warm-up: no agreement test, the 3 smallest means of all 6 pixels
    assert agreement_small_loss_mask(loss_j, loss_k, pred_j, pred_k, 0.5, require_agreement=False).tolist() == \
        [False, False, True, True, False, True]
    # ranked on the MEAN of the two teachers' losses: alone, teacher j would pick pixel 0 and
    # teacher k pixel 1 (and intersecting their picks would select nothing)
    lj = torch.tensor([0.0, 1.0, 9.0, 0.45, 9.0, 9.0])
    lk = torch.tensor([1.0, 0.0, 9.0, 0.45, 9.0, 9.0])  # means 0.5, 0.5, -, 0.45
    assert agreement_small_loss_mask(lj, lk, pred_j, pred_k, 0.25).tolist() == \
        [False, False, False, True, False, False]


def test_agreement_selection_per_class():
    pred = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    label = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    loss = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.3, 0.4, 0.7, 0.6])
    # globally the 4 smallest are all labelled 0; per class, half of each class
    assert agreement_small_loss_mask(loss, loss, pred, pred, 0.5).tolist() == \
        [True, True, False, False, True, True, False, False]
    assert agreement_small_loss_mask(loss, loss, pred, pred, 0.5, groups=label).tolist() == \
        [True, True, False, False, False, False, True, True]


@pytest.mark.parametrize("rank", ["global", "class"])
def test_selection_for_each_network_uses_only_its_two_peers(rank):
    m = make_method({"rank": rank})
    batch = small_batch()
    x, y = batch["image"], batch["label"]
    with torch.no_grad():
        _, ces, preds = forward_all(m, x, y)
    sels = m.select(ces, preds, y, 0.2)
    for i, (j, k) in enumerate(PEERS):
        ref = agreement_small_loss_mask(ces[j], ces[k], preds[j], preds[k], 0.8, y if rank == "class" else None)
        assert torch.equal(sels[i], ref)
    # replace network 0's outputs: only the selections of networks 1 and 2 may change
    g = torch.Generator().manual_seed(5)
    ces2 = [torch.rand(ces[0].shape, generator=g)] + ces[1:]
    preds2 = [torch.randint(0, K, preds[0].shape, generator=g)] + preds[1:]
    new = m.select(ces2, preds2, y, 0.2)
    assert torch.equal(new[0], sels[0])
    assert not torch.equal(new[1], sels[1]) and not torch.equal(new[2], sels[2])


# --------------------------------------------------------------------------- the method


def test_registered_defaults_and_params_validated():
    assert get_method_class("trinet") is TriNet
    _, p = validate_method(MethodConfig(name="trinet"))
    assert (p.forget_rate, p.gradual_fraction, p.warmup_fraction, p.rank, p.dice) == (0.2, 0.1, 0.1, "class", True)
    for bad, key in (({"forget_rate": 1.0}, "forget_rate"), ({"warmup_fraction": 1.0}, "warmup_fraction"),
                     ({"rank": "image"}, "rank"), ({"inference": "net4"}, "inference"), ({"q": 1}, "unknown option")):
        with pytest.raises(ConfigError, match=key):
            validate_method(MethodConfig(name="trinet", params=bad))


def test_three_networks_start_from_different_weights():
    flat = [torch.cat([p.flatten() for p in n.parameters()]) for n in make_method().nets]
    assert not torch.allclose(flat[0], flat[1]) and not torch.allclose(flat[1], flat[2])


@pytest.mark.parametrize("rank", ["class", "global"])
def test_step_loss_and_gradients_equal_manual(rank):
    m = make_method({"rank": rank, "warmup_fraction": 0.0, "dice": False})
    batch = small_batch(seed=1)
    x, y = batch["image"], batch["label"]
    out = m.training_step(batch, StepInfo(step=50, max_steps=100))  # R = 0.2
    out.loss.backward()
    got = [grads(n) for n in m.nets]
    m.zero_grad()
    _, ces, preds = forward_all(m, x, y)
    groups = y if rank == "class" else None
    sels = [agreement_small_loss_mask(ces[j], ces[k], preds[j], preds[k], 0.8, groups) for j, k in PEERS]
    assert all(s.any() for s in sels)
    refs = [ces[i][sels[i]].mean() for i in range(3)]
    for i in range(3):
        assert out.logs[f"loss/net{i + 1}"] == pytest.approx(refs[i].item(), rel=1e-5)
        assert out.logs[f"kept/net{i + 1}"] == pytest.approx(sels[i].float().mean().item())
        j, k = PEERS[i]
        assert out.logs[f"agree/net{i + 1}"] == pytest.approx((preds[j] == preds[k]).float().mean().item())
    assert out.loss.item() == pytest.approx(sum(refs).item(), rel=1e-5)
    sum(refs).backward()
    for i, n in enumerate(m.nets):
        torch.testing.assert_close(got[i], grads(n))


def test_warmup_ignores_agreement():
    m = make_method({"warmup_fraction": 0.5, "dice": False})
    batch = small_batch(seed=2)
    x, y = batch["image"], batch["label"]
    out = m.training_step(batch, StepInfo(step=20, max_steps=100))  # warm-up, R = 0.2
    with torch.no_grad():
        _, ces, _ = forward_all(m, x, y)
    for i, (j, k) in enumerate(PEERS):
        ref = small_loss_mask(0.5 * (ces[j] + ces[k]), 0.8, groups=y)  # rank: class
        assert out.logs[f"kept/net{i + 1}"] == pytest.approx(ref.float().mean().item())
        assert out.logs[f"loss/net{i + 1}"] == pytest.approx(weighted_mean(ces[i], ref.float()).item(), rel=1e-5)
    after = m.training_step(batch, StepInfo(step=50, max_steps=100))
    for i in range(3):
        assert after.logs[f"kept/net{i + 1}"] <= after.logs[f"agree/net{i + 1}"] + 1e-9


def test_selection_logs_match_a_manual_count():
    m = make_method({"warmup_fraction": 0.0})
    batch = small_batch(seed=3)
    x, y, yc = batch["image"], batch["label"], batch["clean_label"]
    out = m.training_step(batch, StepInfo(step=5, max_steps=100))  # R = 0.1
    assert out.logs["forget_rate"] == pytest.approx(0.1)
    with torch.no_grad():
        _, ces, preds = forward_all(m, x, y)
    sels = m.select(ces, preds, y, 0.1)
    correct = y == yc
    hits = sum((s & correct).sum().item() for s in sels)
    assert out.logs["selection/precision"] == pytest.approx(hits / sum(s.sum().item() for s in sels))
    assert out.logs["selection/recall"] == pytest.approx(hits / (3 * correct.sum().item()))
    assert out.logs["selection/base_rate"] == pytest.approx(correct.float().mean().item())


@pytest.mark.parametrize("dice_pixels", [None, "selected"])
def test_3d_step_with_dice_equals_manual(dice_pixels):
    """Dice on by default, over every pixel (`dice_pixels: all`) or over S_i ('selected')."""
    m = make_method({"warmup_fraction": 0.0, **({"dice_pixels": dice_pixels} if dice_pixels else {})}, dims=3)
    assert m.use_dice
    batch = small_batch(dims=3, size=8)
    x, y = batch["image"], batch["label"]
    out = m.training_step(batch, StepInfo(step=50, max_steps=100))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    with torch.no_grad():
        logits, ces, preds = forward_all(m, x, y)
        sels = m.select(ces, preds, y, 0.2)
        t = one_hot(y, K)
        ref = sum(weighted_mean(ces[i], sels[i].float())
                  + soft_dice_loss(torch.softmax(logits[i], 1), t, sels[i].float() if dice_pixels else None)
                  for i in range(3))
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_losses_are_float32_under_autocast():
    m = make_method({"dice": True})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.training_step(small_batch(), StepInfo(step=50, max_steps=100))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_inference_averages_the_three_networks_or_uses_one():
    m = make_method().eval()  # the state-dict round trip and the sums are the contract's (test_contract.py)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        probs = [torch.softmax(n(x), 1) for n in m.nets]
        torch.testing.assert_close(m.predict_proba(x), (probs[0] + probs[1] + probs[2]) / 3)
        m.params = m.params.model_copy(update={"inference": "net3"})
        torch.testing.assert_close(m.predict_proba(x), probs[2])
