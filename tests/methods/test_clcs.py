"""Tests of the CLCS method: its pure pieces against hand-computed values, the step's loss
against a manual computation, state round trip, and an end-to-end run through the real
training loop on a synthetic task with systematic boundary noise."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from noisyseg.config import MethodConfig, NetConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, get_method_class, validate_method
from noisyseg.methods.clcs import (
    CLCS,
    clean_mask,
    confident_shares,
    curriculum_thresholds,
    discrepancy_loss,
    learning_status,
    one_sided_discrepancy,
    reverse_ce,
)
from noisyseg.methods.losses import ce_dice_loss, one_hot, pixel_ce, soft_dice_loss
from noisyseg.nets import net_factory

K = 3


def make_method(params: dict | None = None, num_classes: int = K, dims: int = 2, seed: int = 0) -> CLCS:
    cls, p = validate_method(MethodConfig(name="clcs", params=params or {}))
    torch.manual_seed(seed)
    make = net_factory(NetConfig(channels=[4, 8], features=4, num_res_units=0), dims, 1, num_classes)
    return cls(p, make, num_classes, dims)


def small_batch(n: int = 2, size: int = 16, k: int = K, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, k, (n, size, size), generator=g)
    clean = label.clone()
    clean[:, :4] = 0
    return {"image": torch.randn(n, 1, size, size, generator=g), "label": label, "clean_label": clean}


# --------------------------------------------------------------------------- thresholds and mask


def test_thresholds_match_hand_computed_values():
    sigma = torch.tensor([0.6, 0.3, 0.0, 0.15])
    # beta = [1, 0.5, 0, 0.25]; T = 0.95 * beta / (2 - beta)
    expected = torch.tensor([0.95, 0.95 * 0.5 / 1.5, 0.0, 0.95 * 0.25 / 1.75])
    torch.testing.assert_close(curriculum_thresholds(sigma, 0.95), expected)
    # only ratios matter: counts or shares give the same thresholds
    torch.testing.assert_close(curriculum_thresholds(sigma * 1234.0, 0.95), expected)
    # the majority (most confidently predicted) class reaches tau exactly, the others stay below
    thr = curriculum_thresholds(torch.tensor([5.0, 1.0]), 0.8)
    assert thr[0].item() == pytest.approx(0.8)
    assert thr[1].item() == pytest.approx(0.8 * 0.2 / 1.8)


def test_all_zero_counts_give_zero_thresholds_so_every_pixel_is_clean():
    thr = curriculum_thresholds(torch.zeros(K), 0.95)
    assert torch.equal(thr, torch.zeros(K))
    probs = torch.softmax(torch.randn(2, K, 5, 5), 1)
    label = torch.randint(0, K, (2, 5, 5))
    assert clean_mask(probs, label, thr).all()


def test_clean_mask_compares_probability_of_given_label_with_its_class_threshold():
    # one image, 3 pixels in a row, 2 classes
    probs = torch.tensor([[[0.9, 0.3, 0.6], [0.1, 0.7, 0.4]]]).unsqueeze(-1)  # (1, 2, 3, 1)
    label = torch.tensor([[0, 0, 1]]).unsqueeze(-1)  # p(given) = 0.9, 0.3, 0.4
    thr = torch.tensor([0.5, 0.4])
    assert clean_mask(probs, label, thr).squeeze().tolist() == [True, False, True]
    assert clean_mask(probs, label, torch.tensor([0.3, 0.41])).squeeze().tolist() == [True, True, False]


def test_confident_shares_count_confident_pixels_per_predicted_class():
    probs = torch.tensor([[[0.97, 0.5, 0.02, 0.3], [0.03, 0.5, 0.98, 0.7]]]).unsqueeze(-1)  # (1, 2, 4, 1)
    torch.testing.assert_close(confident_shares(probs, 0.95), torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(confident_shares(probs, 0.975), torch.tensor([0.0, 0.25]))


def test_learning_status_forms_against_hand_counts():
    # 3 classes, 6 pixels: predictions 0,0,0,1,1,2 with confidences .99,.97,.60,.96,.50,.99
    probs = torch.tensor([[.99, .01, .00], [.97, .02, .01], [.60, .30, .10],
                          [.02, .96, .02], [.30, .50, .20], [.00, .01, .99]]).T.reshape(1, 3, 6, 1)
    label = torch.tensor([0, 1, 0, 1, 1, 0]).reshape(1, 6, 1)  # class 2 never labelled
    count, m = learning_status(probs, label, 0.95, "count")
    torch.testing.assert_close(count, torch.tensor([2 / 6, 1 / 6, 1 / 6]))
    assert m.tolist() == [True, True, True]
    pred, m = learning_status(probs, label, 0.95, "predicted")
    torch.testing.assert_close(pred, torch.tensor([2 / 3, 1 / 2, 1.0]))
    assert m.tolist() == [True, True, True]
    lab, m = learning_status(probs, label, 0.95, "labelled")
    torch.testing.assert_close(lab, torch.tensor([1 / 3, 1 / 3, 0.0]))  # pixel 0 only; pixel 3 only
    assert m.tolist() == [True, True, False]
    conf, m = learning_status(probs, label, 0.95, "confidence")
    torch.testing.assert_close(conf, torch.tensor([(.99 + .97 + .60) / 3, (.96 + .50) / 2, .99]))


def test_relative_status_gives_a_small_well_learnt_class_a_high_threshold():
    # class 1 covers 2 % of the pixels and is predicted as confidently as the background
    probs = torch.zeros(1, 2, 100, 1)
    probs[0, 0], probs[0, 1] = 0.99, 0.01
    probs[0, 0, :2], probs[0, 1, :2] = 0.01, 0.99
    label = probs.argmax(1)
    m = make_method({"status": "predicted", "ema_momentum": 0.5}, num_classes=2)
    m._update_sigma(probs, label)
    assert m.thresholds().tolist() == pytest.approx([0.95, 0.95])
    c = make_method({"status": "count", "ema_momentum": 0.5}, num_classes=2)
    c._update_sigma(probs, label)
    assert c.thresholds()[1].item() < 0.02  # the literal count: a 2 % class is never filtered


def test_a_class_absent_from_the_batch_keeps_its_status():
    m = make_method({"status": "predicted", "ema_momentum": 0.5}, num_classes=3)
    m.sigma.copy_(torch.tensor([0.2, 0.4, 0.8]))
    probs = torch.tensor([[.99, .01, 0.0], [.01, .99, 0.0]]).T.reshape(1, 3, 2, 1)
    m._update_sigma(probs, torch.tensor([[0, 1]]).reshape(1, 2, 1))
    torch.testing.assert_close(m.sigma, torch.tensor([0.6, 0.7, 0.8]))


# --------------------------------------------------------------------------- discrepancy and RCE


def test_discrepancy_is_one_for_orthogonal_and_two_for_identical_features():
    z1 = torch.zeros(2, 4, 3, 3)
    z2 = torch.zeros(2, 4, 3, 3)
    z1[:, 0], z2[:, 1] = 1.0, 2.0
    assert discrepancy_loss(z1, z2).item() == pytest.approx(1.0)
    z = torch.rand(2, 4, 3, 3) + 0.1
    assert discrepancy_loss(z, z.clone()).item() == pytest.approx(2.0, abs=1e-6)
    assert discrepancy_loss(z, 3.0 * z).item() == pytest.approx(2.0, abs=1e-6)  # scale-free
    assert discrepancy_loss(z, -z).item() == pytest.approx(0.0, abs=1e-6)
    # an all-zero feature vector (dead ReLU pixel) is finite and counts as orthogonal
    assert discrepancy_loss(torch.zeros(1, 4, 2, 2), z[:1, :, :2, :2]).item() == pytest.approx(1.0)


def test_discrepancy_matches_cosine_similarity_on_random_features():
    z1, z2 = torch.randn(2, 5, 4, 3, 2), torch.randn(2, 5, 4, 3, 2)  # 3D features
    ref = 1.0 + F.cosine_similarity(z1, z2, dim=1).mean()
    assert discrepancy_loss(z1, z2).item() == pytest.approx(ref.item(), abs=1e-6)


def test_stop_gradient_sides_receive_no_gradient():
    z1 = torch.randn(2, 4, 3, 3, requires_grad=True)
    z2 = torch.randn(2, 4, 3, 3, requires_grad=True)
    one_sided_discrepancy(z1, z2).backward()  # sg(z1): only z2 learns
    assert z1.grad is None
    assert z2.grad is not None and z2.grad.abs().sum() > 0
    g2 = z2.grad.clone()
    z2.grad = None
    one_sided_discrepancy(z2, z1).backward()  # sg(z2): only z1 learns
    assert z2.grad is None
    assert z1.grad is not None and z1.grad.abs().sum() > 0
    g1 = z1.grad.clone()
    # the fused loss has the value and gradients of ½·(both one-sided terms)
    z1.grad = z2.grad = None
    discrepancy_loss(z1, z2).backward()
    torch.testing.assert_close(z1.grad, 0.5 * g1)
    torch.testing.assert_close(z2.grad, 0.5 * g2)
    with torch.no_grad():
        both = 0.5 * one_sided_discrepancy(z1, z2) + 0.5 * one_sided_discrepancy(z2, z1)
        assert discrepancy_loss(z1, z2).item() == pytest.approx(both.item(), abs=1e-6)


def test_reverse_ce_matches_definition_and_closed_form():
    probs = torch.softmax(torch.randn(2, 4, 5, 6), 1)
    target = torch.randint(0, 4, (2, 5, 6))
    got = reverse_ce(probs, target)
    p_t = probs.gather(1, target.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(got, -math.log(1e-4) * (1 - p_t))
    definition = -(probs * torch.log(one_hot(target, 4).clamp(1e-4, 1.0))).sum(1)
    torch.testing.assert_close(got, definition)
    assert got.shape == (2, 5, 6)


# --------------------------------------------------------------------------- the method


def test_registered_and_params_validated():
    assert get_method_class("clcs") is CLCS
    with pytest.raises(ConfigError, match="tau"):
        validate_method(MethodConfig(name="clcs", params={"tau": 1.5}))
    with pytest.raises(ConfigError, match="ema_momentum"):
        validate_method(MethodConfig(name="clcs", params={"ema_momentum": 1.0}))
    with pytest.raises(ConfigError, match="inference"):
        validate_method(MethodConfig(name="clcs", params={"inference": "max"}))
    with pytest.raises(ConfigError, match="unknown option"):
        validate_method(MethodConfig(name="clcs", params={"lamda_dis": 1.0}))
    assert (make_method(dims=2).dice_pixels, make_method(dims=3).dice_pixels) == ("all", "all")
    assert make_method({"dice_pixels": "none"}, dims=3).use_dice is False
    defaults = make_method().params
    assert (defaults.status, defaults.lambda_nbl) == ("predicted", 0.1)


def test_two_branches_start_from_different_weights():
    m = make_method()
    p1, p2 = (torch.cat([p.flatten() for p in n.parameters()]) for n in (m.net1, m.net2))
    assert not torch.allclose(p1, p2)


def test_warmup_is_plain_ce_dice_on_both_branches_and_updates_the_ema():
    m = make_method({"warmup_fraction": 0.5, "ema_momentum": 0.9, "tau": 0.4, "status": "count"})  # low tau
    m.sigma.fill_(0.5)
    batch = small_batch()
    out = m.training_step(batch, StepInfo(step=4, max_steps=10))
    with torch.no_grad():
        ref = ce_dice_loss(m.net1(batch["image"]), batch["label"]) + ce_dice_loss(m.net2(batch["image"]), batch["label"])
        mean_probs = 0.5 * (torch.softmax(m.net1(batch["image"]), 1) + torch.softmax(m.net2(batch["image"]), 1))
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert "loss/warmup" in out.logs and "loss/nbl" not in out.logs
    shares = confident_shares(mean_probs, 0.4)
    assert shares.sum() > 0.5
    torch.testing.assert_close(m.sigma, 0.9 * 0.5 + 0.1 * shares)


def test_step_with_all_pixels_clean_is_ce_plus_discrepancy():
    m = make_method({"dice_pixels": "none"})  # sigma = 0 -> all thresholds 0 -> every pixel clean, NBL = 0
    batch = small_batch()
    out = m.training_step(batch, StepInfo(step=50, max_steps=100))
    with torch.no_grad():
        z1, l1 = m.net1.forward_with_features(batch["image"])
        z2, l2 = m.net2.forward_with_features(batch["image"])
        ref = pixel_ce(l1, batch["label"]).mean() + pixel_ce(l2, batch["label"]).mean() + discrepancy_loss(z1, z2)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert out.logs["loss/nbl"] == 0.0
    assert all(out.logs[f"clean_frac/c{k}"] == 1.0 for k in range(K))
    assert all(out.logs[f"threshold/c{k}"] == 0.0 for k in range(K))
    out.loss.backward()
    for net in (m.net1, m.net2):
        assert all(p.grad is not None for p in net.parameters())


def test_step_with_no_clean_pixel_is_nbl_plus_discrepancy():
    m = make_method({"tau": 1.0, "nbl_alpha": 0.3, "nbl_beta": 0.7, "lambda_nbl": 2.0, "lambda_dis": 0.5,
                     "dice_pixels": "none"})
    m.sigma.fill_(1.0)  # every class's threshold = tau = 1: nothing is clean (p < 1)
    batch = small_batch()
    out = m.training_step(batch, StepInfo(step=50, max_steps=100))
    y = batch["label"]
    with torch.no_grad():
        z1, l1 = m.net1.forward_with_features(batch["image"])
        z2, l2 = m.net2.forward_with_features(batch["image"])
        p1, p2 = torch.softmax(l1, 1), torch.softmax(l2, 1)
        w = (0.5 * (p1 + p2)).gather(1, y.unsqueeze(1)).squeeze(1)
        nbl = sum((w * (0.3 * pixel_ce(l, y) + 0.7 * -math.log(1e-4) * (1 - p.gather(1, y.unsqueeze(1)).squeeze(1))))
                  .mean() for l, p in ((l1, p1), (l2, p2)))
        ref = 2.0 * nbl + 0.5 * discrepancy_loss(z1, z2)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert out.logs["loss/clean"] == 0.0
    assert math.isnan(out.logs["selection/precision"])  # nothing selected: undefined, not 0 or 1
    assert out.logs["selection/recall"] == 0.0


def test_selection_logs_match_a_manual_count():
    m = make_method()
    m.sigma.copy_(torch.tensor([0.5, 0.2, 0.4]))
    batch = small_batch(seed=3)
    thr = curriculum_thresholds(m.sigma.clone(), 0.95)
    out = m.training_step(batch, StepInfo(step=90, max_steps=100))
    with torch.no_grad():
        probs = 0.5 * (torch.softmax(m.net1(batch["image"]), 1) + torch.softmax(m.net2(batch["image"]), 1))
    clean = clean_mask(probs, batch["label"], thr)
    y, yc = batch["label"], batch["clean_label"]
    correct = y == yc
    for k in range(K):
        assert out.logs[f"threshold/c{k}"] == pytest.approx(thr[k].item())
        assert out.logs[f"clean_frac/c{k}"] == pytest.approx(clean[y == k].float().mean().item())
    assert out.logs["selection/precision"] == pytest.approx(correct[clean].float().mean().item())
    assert out.logs["selection/recall"] == pytest.approx(clean[correct].float().mean().item())
    assert out.logs["selection/base_rate"] == pytest.approx(correct.float().mean().item())
    no_clean = {k: v for k, v in batch.items() if k != "clean_label"}
    assert not any(k.startswith("selection/") for k in m.training_step(no_clean, StepInfo(90, 100)).logs)


def test_losses_are_float32_under_autocast():
    m = make_method({"dice_pixels": "clean"})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.training_step(small_batch(), StepInfo(step=50, max_steps=100))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_ema_buffer_is_saved_and_restored():
    m = make_method()
    m.training_step(small_batch(), StepInfo(step=0, max_steps=10))
    m.sigma.add_(torch.tensor([0.3, 0.1, 0.2]))
    state = m.state_dict()
    assert "sigma" in state
    fresh = make_method(seed=1)
    assert not torch.equal(fresh.sigma, m.sigma)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.sigma, m.sigma)
    torch.testing.assert_close(fresh.thresholds(), m.thresholds())
    assert fresh.to(torch.float64).sigma.dtype == torch.float64  # moves with the module


def test_predict_proba_modes():
    x = torch.randn(1, 1, 16, 16)
    m = make_method().eval()
    with torch.no_grad():
        p1, p2 = torch.softmax(m.net1(x), 1), torch.softmax(m.net2(x), 1)
        torch.testing.assert_close(m.predict_proba(x), 0.5 * (p1 + p2))
        for mode, ref in (("branch1", p1), ("branch2", p2)):
            mm = make_method({"inference": mode}).eval()
            torch.testing.assert_close(mm.predict_proba(x), ref)


# --------------------------------------------------------------------------- end to end

SIZE = 64


def _ellipses(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    lab = np.zeros((SIZE, SIZE), bool)
    for _ in range(rng.integers(1, 3)):
        cy, cx = rng.uniform(0.3 * SIZE, 0.7 * SIZE, 2)
        a, b = rng.uniform(0.14 * SIZE, 0.26 * SIZE, 2)
        th = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        lab |= (u / a) ** 2 + (v / b) ** 2 <= 1
    return lab


def write_eroded_task(root, seed: int = 0, n_train: int = 16, n_test: int = 6):
    """Decathlon-layout 2D task: 1-2 ellipses per image, intensity 0.3 (bg) / 0.7 (fg) plus
    Gaussian noise. Training labels are eroded by 1-5 px per case (systematic under-
    segmentation: every error is a true organ pixel labelled background), with the clean
    labels in labelsTr_clean/ and clean test labels in labelsTs/."""
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "labelsTr_clean", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True)
    ids = []
    for i in range(n_train + n_test):
        lab = _ellipses(rng)
        img = np.clip((0.3 + 0.4 * lab + rng.normal(0, 0.14, lab.shape)) * 255, 0, 255).astype(np.uint8)
        cid, split = f"case_{i:03d}", "Tr" if i < n_train else "Ts"
        Image.fromarray(img).save(root / f"images{split}" / f"{cid}.png")
        if split == "Tr":
            noisy = ndimage.binary_erosion(lab, np.ones((3, 3), bool), iterations=int(rng.integers(1, 6)))
            Image.fromarray(noisy.astype(np.uint8)).save(root / "labelsTr" / f"{cid}.png")
            Image.fromarray(lab.astype(np.uint8)).save(root / "labelsTr_clean" / f"{cid}.png")
            ids.append(cid)
        else:
            Image.fromarray(lab.astype(np.uint8)).save(root / "labelsTs" / f"{cid}.png")
    (root / "dataset.json").write_text(json.dumps({
        "name": "eroded-ellipses", "tensorImageSize": "2D", "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "organ"}, "numTraining": n_train,
        "training": [{"image": f"./imagesTr/{c}.png", "label": f"./labelsTr/{c}.png"} for c in ids],
    }))
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a 2-core machine shared with other processes, two OpenMP threads
    contend and run tens of times slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.slow
def test_clcs_selects_cleaner_pixels_and_beats_supervised_on_eroded_labels(tmp_path, one_thread):
    """CLCS's selection (CE on the selected pixels, no Dice term) against supervised (150 steps,
    Dice on clean test labels). Measured with the earlier count form and lambda_nbl=0.1: seed 0:
    0.71 vs 0.98, seed 1: 0.77 vs 0.98, seed 2: 0.68 vs 0.97. The 2D default adds soft Dice over
    all pixels against the given labels, which re-imports part of an erosion applied to every
    label (seed 0: 0.73 vs 0.71; docs/measurements/clcs_defaults.md).
    With the lineage default lambda_nbl=1 (200 steps) CLCS was *not* better (seeds 0/1/2:
    0.67/0.75/0.55 vs supervised 0.68/0.76/0.57): the RCE term (coefficient β·|log 1e-4| ≈ 4.6)
    drives the suspected-noisy pixels back to their labels until the noise is memorised;
    see the module docstring of noisyseg.methods.clcs."""
    from noisyseg import api
    from noisyseg.metrics import dice_per_class

    data = write_eroded_task(tmp_path / "data")
    over = {"data": {"patch_size": [SIZE, SIZE], "batch_size": 8, "val_fraction": 0.0},
            "net": {"channels": [8, 16, 32], "features": 8, "num_res_units": 0},
            "optim": {"lr": 3e-3},
            "train": {"log_every": 10, "val_every": 10**6, "ckpt_every": 10**6, "seed": 0}}
    dice = {}
    for method, params in (("supervised", {}), ("clcs", {"dice_pixels": "none"})):
        run = tmp_path / method
        api.train(data=data, out=run, method=method, max_steps=150, device="cpu", progress=False,
                  overrides={**over, "method": {"params": params}})
        api.predict(run=run, images=data / "imagesTs", out=tmp_path / f"pred_{method}", device="cpu",
                    progress=False)
        scores = []
        for f in sorted((data / "labelsTs").glob("*.png")):
            truth = np.array(Image.open(f))
            pred = np.array(Image.open(tmp_path / f"pred_{method}" / f.name))
            scores.append(dice_per_class(pred, truth, 2)[1])
        dice[method] = float(np.mean(scores))
    assert dice["clcs"] > dice["supervised"] + 0.1, dice

    rows = list(csv.DictReader((tmp_path / "clcs" / "train_log.csv").open()))
    last = rows[-5:]

    def mean(key):
        return float(np.mean([float(r[key]) for r in last]))

    assert mean("selection/precision") > mean("selection/base_rate") + 0.03
    # the background reaches tau; the organ's threshold follows its own learning status (the
    # literal count form would keep it near its share of the image, about 0.1, and trust all its labels)
    assert mean("threshold/c0") == pytest.approx(0.95, abs=1e-3)
    assert 0.3 < mean("threshold/c1") <= 0.95
    assert (tmp_path / "clcs" / "figures" / "clcs_curves.png").stat().st_size > 0


def test_dice_over_all_pixels_reaches_the_pixels_left_out_of_the_clean_loss():
    batch = small_batch()
    off = {"lambda_nbl": 0.0, "lambda_dis": 0.0, "tau": 1.0}
    for mode, reaches in (("all", True), ("clean", False)):
        m = make_method({"dice_pixels": mode, **off})
        m.sigma.fill_(1.0)  # every threshold at τ = 1: no pixel is selected as clean
        out = m.training_step(batch, StepInfo(step=50, max_steps=100))
        assert out.logs["clean_frac/c1"] == 0.0
        grads = torch.autograd.grad(out.loss, list(m.net1.parameters()), allow_unused=True)
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads) is reaches
        if mode == "all":  # the loss is then each branch's soft Dice against the given labels
            with torch.no_grad():
                target = one_hot(batch["label"], K)
                expected = sum(soft_dice_loss(torch.softmax(net(batch["image"]), 1), target)
                               for net in (m.net1, m.net2))
            assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
