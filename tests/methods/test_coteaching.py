"""Tests of per-pixel Co-teaching: the small-loss selection and the forget-rate schedule
against hand-computed values, the cross update (each network learns only from its
partner's selection) against a manual computation, logs, 3D, and state round trip."""

from __future__ import annotations

import math

import pytest
import torch

from noisyseg.config import MethodConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, get_method_class, validate_method
from noisyseg.methods.coteaching import (
    CoTeaching,
    forget_rate_at,
    selected_loss,
    small_loss_mask,
)
from noisyseg.methods.losses import one_hot, pixel_ce, soft_dice_loss

from method_kit import grads, random_batch, tiny_method  # tests/methods helper

K = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def make_method(params: dict | None = None, dims: int = 2, seed: int = 0):
    return tiny_method("coteaching", params, dims=dims, k=K, seed=seed)


def small_batch(dims: int = 2, n: int = 2, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    return random_batch(dims, n, size, seed, k=K)


# --------------------------------------------------------------------------- small-loss mask


def test_small_loss_mask_keeps_exactly_the_lowest_share():
    loss = torch.rand(2, 10, 50, generator=torch.Generator().manual_seed(0))  # distinct values
    for ratio in (0.0, 0.37, 0.5, 0.8, 1.0):
        mask = small_loss_mask(loss, ratio)
        assert mask.shape == loss.shape and mask.dtype == torch.bool
        n = round(ratio * 1000)
        assert int(mask.sum()) == n
        if 0 < n < 1000:
            assert loss[mask].max() < loss[~mask].min()


def test_small_loss_mask_rounds_half_up_and_breaks_ties_by_position():
    loss = torch.tensor([[0.3, 0.1, 0.4, 0.2]])
    assert small_loss_mask(loss, 0.5).tolist() == [[False, True, False, True]]
    assert small_loss_mask(loss, 0.375).tolist() == [[False, True, False, True]]  # 1.5 -> 2
    assert small_loss_mask(loss, 0.125).tolist() == [[False, True, False, False]]  # 0.5 -> 1
    ties = torch.tensor([[1.0, 0.5, 0.5, 0.5, 0.5, 2.0]])
    assert small_loss_mask(ties, 0.5).tolist() == [[False, True, True, True, False, False]]
    with pytest.raises(ValueError):
        small_loss_mask(loss, 1.5)


def test_small_loss_mask_per_group_hand_example():
    loss = torch.tensor([0.1, 0.9, 0.5, 1.3, 1.7, 1.2])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    # globally the 4 smallest are 0.1, 0.5, 0.9, 1.2; per group the 2 smallest of each
    assert small_loss_mask(loss, 2 / 3).tolist() == [True, True, True, False, False, True]
    assert small_loss_mask(loss, 2 / 3, groups).tolist() == [True, False, True, True, False, True]
    # groups need not be contiguous or start at 0
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert small_loss_mask(loss[perm], 2 / 3, groups[perm] + 5).tolist() == \
        small_loss_mask(loss, 2 / 3, groups)[perm].tolist()


def test_small_loss_mask_with_valid_counts_only_valid_entries():
    loss = torch.tensor([0.0, 0.4, 0.2, 0.3, 0.1, 0.0])
    valid = torch.tensor([False, True, True, True, True, False])
    # 4 valid entries, keep round(0.5 * 4) = 2: 0.1 and 0.2; the invalid zeros never count
    assert small_loss_mask(loss, 0.5, valid=valid).tolist() == [False, False, True, False, True, False]
    assert not small_loss_mask(loss, 1.0, valid=valid)[~valid].any()
    assert not small_loss_mask(loss, 1.0, valid=torch.zeros(6, dtype=torch.bool)).any()


def test_small_loss_mask_per_group_matches_a_reference_loop():
    g = torch.Generator().manual_seed(1)
    loss = torch.rand(3, 7, 9, generator=g).round(decimals=1)  # many ties
    groups = torch.randint(0, 4, (3, 7, 9), generator=g)
    valid = torch.rand(3, 7, 9, generator=g) > 0.3
    got = small_loss_mask(loss, 0.6, groups, valid)
    ref = torch.zeros(loss.numel(), dtype=torch.bool)
    flat_l, flat_g, flat_v = loss.flatten().tolist(), groups.flatten().tolist(), valid.flatten().tolist()
    for c in range(4):
        idx = [i for i in range(len(flat_l)) if flat_g[i] == c and flat_v[i]]
        idx.sort(key=lambda i: (flat_l[i], i))
        ref[idx[:math.floor(0.6 * len(idx) + 0.5)]] = True
    assert torch.equal(got.flatten(), ref)


# --------------------------------------------------------------------------- schedule


def test_forget_rate_schedule_hand_values():
    assert forget_rate_at(0, 100, 0.2, 0.1) == 0.0
    assert forget_rate_at(5, 100, 0.2, 0.1) == pytest.approx(0.1)
    assert forget_rate_at(10, 100, 0.2, 0.1) == pytest.approx(0.2)
    assert forget_rate_at(99, 100, 0.2, 0.1) == pytest.approx(0.2)
    assert forget_rate_at(30, 200, 0.5, 0.25) == pytest.approx(0.5 * 30 / 50)
    assert forget_rate_at(0, 100, 0.3, 0.0) == pytest.approx(0.3)  # no ramp


# --------------------------------------------------------------------------- the method


def test_registered_defaults_and_params_validated():
    assert get_method_class("coteaching") is CoTeaching
    _, p = validate_method(MethodConfig(name="coteaching"))
    assert (p.forget_rate, p.gradual_fraction, p.rank, p.dice) == (0.2, 0.1, "class", True)
    for bad, key in (({"forget_rate": 1.0}, "forget_rate"), ({"forget_rate": -0.1}, "forget_rate"),
                     ({"gradual_fraction": 1.5}, "gradual_fraction"), ({"rank": "image"}, "rank"),
                     ({"inference": "max"}, "inference"), ({"forgetrate": 0.1}, "unknown option")):
        with pytest.raises(ConfigError, match=key):
            validate_method(MethodConfig(name="coteaching", params=bad))
    assert make_method(dims=2).use_dice is True and make_method({"dice": False}, dims=2).use_dice is False


def test_two_networks_start_from_different_weights():
    m = make_method()
    p1, p2 = (torch.cat([p.flatten() for p in n.parameters()]) for n in (m.net1, m.net2))
    assert not torch.allclose(p1, p2)


@pytest.mark.parametrize("rank", ["class", "global"])
def test_each_network_learns_only_from_its_partners_small_loss_pixels(rank):
    m = make_method({"rank": rank, "dice": False})  # CE alone: the selection is the subject
    batch = small_batch()
    info = StepInfo(step=50, max_steps=100)  # past the ramp: R = 0.2
    x, y = batch["image"], batch["label"]
    out = m.training_step(batch, info)
    out.loss.backward()
    g1, g2 = grads(m.net1), grads(m.net2)

    m.zero_grad()
    l1, l2 = m.net1(x), m.net2(x)
    ce1, ce2 = pixel_ce(l1, y), pixel_ce(l2, y)
    groups = y if rank == "class" else None
    sel1, sel2 = small_loss_mask(ce1, 0.8, groups), small_loss_mask(ce2, 0.8, groups)
    assert not torch.equal(sel1, sel2)  # so learning from the own selection would differ
    ref1, ref2 = ce1[sel2].mean(), ce2[sel1].mean()
    assert out.logs["loss/net1"] == pytest.approx(ref1.item(), rel=1e-5)
    assert out.logs["loss/net2"] == pytest.approx(ref2.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx((ref1 + ref2).item(), rel=1e-5)
    (ref1 + ref2).backward()
    torch.testing.assert_close(g1, grads(m.net1))
    torch.testing.assert_close(g2, grads(m.net2))
    m.zero_grad()
    ce1 = pixel_ce(m.net1(x), y)
    ce1[sel1].mean().backward()  # net1's OWN selection: a different gradient
    assert not torch.allclose(g1, grads(m.net1))


def test_changing_labels_outside_the_partners_selection_leaves_net1_gradient_unchanged():
    m = make_method({"rank": "global", "dice_pixels": "selected"})  # 'all' (the default) sees every label
    batch = small_batch(seed=2)
    info = StepInfo(step=50, max_steps=100)
    x, y = batch["image"], batch["label"]
    m.training_step(batch, info).loss.backward()
    g1, g2 = grads(m.net1), grads(m.net2)
    with torch.no_grad():
        p2 = torch.softmax(m.net2(x), 1)
        sel2 = small_loss_mask(pixel_ce(m.net2(x), y), 0.8)
    # outside S2, relabel each pixel with net2's least likely class: net2's loss there can only
    # grow, so S2 stays the same, and net1 (taught on S2 only) must get the same gradient
    y_new = torch.where(sel2, y, p2.argmin(1))
    assert (y_new != y).sum() > 10
    assert torch.equal(small_loss_mask(pixel_ce(m.net2(x), y_new).detach(), 0.8), sel2)
    m.zero_grad()
    m.training_step({**batch, "label": y_new}, info).loss.backward()
    torch.testing.assert_close(grads(m.net1), g1)
    assert not torch.allclose(grads(m.net2), g2)  # net2 learns on net1's selection, which changed


def test_ramp_start_trains_on_every_pixel():
    m = make_method({"dice": False})
    batch = small_batch()
    out = m.training_step(batch, StepInfo(step=0, max_steps=100))
    assert out.logs["forget_rate"] == 0.0
    assert out.logs["kept/net1"] == 1.0 and out.logs["kept/net2"] == 1.0
    with torch.no_grad():
        x, y = batch["image"], batch["label"]
        ref = pixel_ce(m.net1(x), y).mean() + pixel_ce(m.net2(x), y).mean()
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_logs_match_a_manual_count():
    m = make_method({"forget_rate": 0.3, "gradual_fraction": 0.2, "rank": "class"})
    batch = small_batch(seed=3)
    info = StepInfo(step=10, max_steps=100)  # R = 0.3 * 10 / 20 = 0.15
    out = m.training_step(batch, info)
    x, y, yc = batch["image"], batch["label"], batch["clean_label"]
    with torch.no_grad():
        sel1 = small_loss_mask(pixel_ce(m.net1(x), y), 0.85, y)
        sel2 = small_loss_mask(pixel_ce(m.net2(x), y), 0.85, y)
    correct = y == yc
    assert out.logs["forget_rate"] == pytest.approx(0.15)
    assert out.logs["kept/net1"] == pytest.approx(sel1.float().mean().item())
    assert out.logs["kept/net1"] == pytest.approx(0.85, abs=3 / y.numel())  # one rounding per class
    n_sel = sel1.sum() + sel2.sum()
    assert out.logs["selection/precision"] == pytest.approx(
        ((correct & sel1).sum() + (correct & sel2).sum()).item() / n_sel.item())
    assert out.logs["selection/recall"] == pytest.approx(
        ((correct & sel1).sum() + (correct & sel2).sum()).item() / (2 * correct.sum().item()))
    assert out.logs["selection/base_rate"] == pytest.approx(correct.float().mean().item())
    no_clean = {k: v for k, v in batch.items() if k != "clean_label"}
    assert not any(k.startswith("selection/") for k in m.training_step(no_clean, info).logs)


def test_3d_step_with_dice_equals_manual_and_backward_works():
    m = make_method(dims=3)  # Dice on by default in 3D
    batch = small_batch(dims=3, size=8)
    info = StepInfo(step=50, max_steps=100)
    out = m.training_step(batch, info)
    out.loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    x, y = batch["image"], batch["label"]
    with torch.no_grad():
        l1, l2 = m.net1(x), m.net2(x)
        ce1, ce2 = pixel_ce(l1, y), pixel_ce(l2, y)
        sel1, sel2 = small_loss_mask(ce1, 0.8, groups=y), small_loss_mask(ce2, 0.8, groups=y)  # rank: class
        t = one_hot(y, K)
        ref = (ce1[sel2].mean() + soft_dice_loss(torch.softmax(l1, 1), t)  # Dice over every pixel
               + ce2[sel1].mean() + soft_dice_loss(torch.softmax(l2, 1), t))
        ref_selected = (ce1[sel2].mean() + soft_dice_loss(torch.softmax(l1, 1), t, sel2.float())
                        + ce2[sel1].mean() + soft_dice_loss(torch.softmax(l2, 1), t, sel1.float()))
        torch.testing.assert_close(selected_loss(l1, ce1, y, sel2, True, dice_pixels="selected")
                                   + selected_loss(l2, ce2, y, sel1, True, dice_pixels="selected"), ref_selected)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert abs(ref.item() - ref_selected.item()) > 1e-4


@pytest.mark.parametrize("name", ["coteaching", "trinet"])
def test_dice_pixels_default_is_all_in_2d_and_3d(name):
    assert tiny_method(name, None, dims=2, k=K).dice_pixels == "all"
    assert tiny_method(name, None, dims=3, k=K).dice_pixels == "all"
    assert tiny_method(name, {"dice_pixels": "selected"}, dims=2, k=K).dice_pixels == "selected"


@pytest.mark.parametrize("with_valid", [False, True])
def test_dice_over_all_pixels_equals_manual(with_valid):
    """`dice_pixels: all`: CE on the partner's selection, soft Dice over every annotated pixel."""
    m = make_method({"dice_pixels": "all"})
    batch = small_batch(seed=4)
    x, y = batch["image"], batch["label"]
    valid = torch.ones_like(y, dtype=torch.bool)
    if with_valid:
        valid[:, :3] = False
        batch = {**batch, "valid": valid}
    out = m.training_step(batch, StepInfo(step=50, max_steps=100))
    with torch.no_grad():
        l1, l2 = m.net1(x), m.net2(x)
        ce1, ce2 = pixel_ce(l1, y), pixel_ce(l2, y)
        sel1 = small_loss_mask(ce1, 0.8, groups=y, valid=valid)
        sel2 = small_loss_mask(ce2, 0.8, groups=y, valid=valid)
        t, v = one_hot(y, K), valid.float()
        ref = (ce1[sel2].mean() + soft_dice_loss(torch.softmax(l1, 1), t, v)
               + ce2[sel1].mean() + soft_dice_loss(torch.softmax(l2, 1), t, v))
        selected_only = (ce1[sel2].mean() + soft_dice_loss(torch.softmax(l1, 1), t, sel2.float())
                         + ce2[sel1].mean() + soft_dice_loss(torch.softmax(l2, 1), t, sel1.float()))
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert abs(ref.item() - selected_only.item()) > 1e-4  # the two settings differ on this batch


def test_losses_are_float32_under_autocast():
    m = make_method({"dice": True})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.training_step(small_batch(), StepInfo(step=50, max_steps=100))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_inference_averages_the_two_networks_or_uses_one():
    m = make_method().eval()  # the state-dict round trip and the sums are the contract's (test_contract.py)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        p1, p2 = torch.softmax(m.net1(x), 1), torch.softmax(m.net2(x), 1)
        torch.testing.assert_close(m.predict_proba(x), 0.5 * (p1 + p2))
        m.params = m.params.model_copy(update={"inference": "net2"})
        torch.testing.assert_close(m.predict_proba(x), p2)


def test_per_class_selection_quality_against_hand_counts():
    from noisyseg.methods.base import selection_log_values

    label = torch.tensor([[0, 0, 1, 1, 1, 2]])
    clean = torch.tensor([[0, 1, 1, 1, 0, 2]])  # pixels 1 and 4 are wrong
    sel = torch.tensor([[True, True, True, False, False, False]])
    names, values = selection_log_values([sel], label, clean, num_classes=3)
    got = dict(zip(names, values.tolist()))
    assert got["selection/precision"] == pytest.approx(2 / 3) and got["selection/recall"] == pytest.approx(2 / 4)
    # class 0: selected {0 ok, 1 wrong}; class 1: selected {2 ok}, correct {2, 3}; class 2: nothing selected
    assert got["selection_precision/c0"] == pytest.approx(0.5) and got["selection_precision/c1"] == 1.0
    assert math.isnan(got["selection_precision/c2"])
    assert got["selection_recall/c0"] == 1.0 and got["selection_recall/c1"] == 0.5 and got["selection_recall/c2"] == 0.0
    assert [got[f"selection_kept/c{k}"] for k in range(3)] == pytest.approx([1.0, 1 / 3, 0.0])
