"""MetaDCSeg: DCD pieces with known answers, and a short noisy-label run against `supervised`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from noisyseg.config import MethodConfig, NetConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, get_method_class, validate_method
from noisyseg.methods.base import unit_channels
from noisyseg.methods.meta_warmup import class_agreement
from noisyseg.methods.metadcseg import (
    BACKGROUND,
    BOUNDARY,
    FOREGROUND,
    center_distance,
    dcd_gamma,
    dcd_regions,
    ema_centers,
    region_center_sums,
)
from noisyseg.methods.meta_weights import meta_dice_loss, soft_target


def disk(size=48, radius=12.0, centre=(23.5, 24.0)):
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


# ---------------------------------------------------------------------------------------
# DCD regions
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [3, 5])
def test_boundary_band_of_a_disk_is_a_ring_at_its_edge(width):
    mask = disk()
    pseudo = torch.from_numpy(mask.astype(np.int64))[None]
    fg_prob = pseudo.float()  # certain everywhere: the band alone makes the boundary
    region = dcd_regions(pseudo, fg_prob, boundary_width=width, uncertainty_threshold=0.5)[0].numpy()

    r = (width - 1) // 2
    st = np.ones((width, width), bool)
    expected = ndimage.binary_dilation(mask, st) & ~ndimage.binary_erosion(mask, st)
    assert np.array_equal(region == BOUNDARY, expected)
    # geometry: the band is the set of pixels within r px (Chebyshev) of the edge, on both sides
    dist_in = ndimage.distance_transform_cdt(mask, metric="chessboard")  # to the nearest bg pixel
    dist_out = ndimage.distance_transform_cdt(~mask, metric="chessboard")
    assert np.array_equal(region == BOUNDARY, (mask & (dist_in <= r)) | (~mask & (dist_out <= r)))
    yy, xx = np.mgrid[:48, :48]
    rad = np.hypot(yy - 23.5, xx - 24.0)[region == BOUNDARY]
    assert rad.min() > 12 - r - 1.5 and rad.max() < 12 + r + 1.5
    # ring thickness along a ray: 2r pixels, r inside and r outside the disk
    row = region[24]
    assert (row == BOUNDARY).sum() == 2 * 2 * r
    assert np.array_equal(region == FOREGROUND, mask & ~expected)
    assert np.array_equal(region == BACKGROUND, ~mask & ~expected)


def test_uncertain_pixels_join_the_boundary_and_multiclass_foreground_is_any_class():
    pseudo = torch.zeros(1, 20, 20, dtype=torch.long)
    pseudo[0, 5:15, 5:10] = 1
    pseudo[0, 5:15, 10:15] = 2  # two classes: one foreground block, no band between them
    fg_prob = (pseudo > 0).float()
    fg_prob[0, 0, 0] = 0.6  # u = 0.8 > 0.5
    fg_prob[0, 10, 10] = 0.4
    fg_prob[0, 19, 19] = 0.8  # u = 0.4: stays background
    region = dcd_regions(pseudo, fg_prob)[0]
    assert region[0, 0] == BOUNDARY and region[10, 10] == BOUNDARY and region[19, 19] == BACKGROUND
    inner = region[7:13, 7:13] == FOREGROUND  # no band between the classes 1 and 2
    assert int((~inner).sum()) == 1 and not inner[3, 3]
    assert region[5, 7] == BOUNDARY and region[4, 7] == BOUNDARY and region[3, 7] == BACKGROUND


def test_regions_in_3d():
    pseudo = torch.zeros(1, 10, 10, 10, dtype=torch.long)
    pseudo[0, 2:8, 2:8, 2:8] = 1
    region = dcd_regions(pseudo, pseudo.float())[0]
    assert (region[3:7, 3:7, 3:7] == FOREGROUND).all()
    assert region[2, 5, 5] == BOUNDARY and region[1, 5, 5] == BOUNDARY and region[0, 5, 5] == BACKGROUND


# ---------------------------------------------------------------------------------------
# centers, distances, γ, target
# ---------------------------------------------------------------------------------------

def test_unit_channels_equals_normalize_and_keeps_zero_vectors_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 9, 7, generator=g) * torch.rand(2, 1, 9, 7, generator=g) * 5
    x[1, :, 4, 4] = 0
    x[0, :, 2, 3] = 1e-20  # below eps: scaled by 1/eps like F.normalize, not blown up
    torch.testing.assert_close(unit_channels(x), F.normalize(x, dim=1), rtol=1e-6, atol=1e-7)
    assert float(unit_channels(x)[1, :, 4, 4].abs().max()) == 0.0
    torch.testing.assert_close(unit_channels(x).norm(dim=1)[0, 0], torch.ones(7), rtol=1e-6, atol=0)


def test_feature_equal_to_its_center_has_distance_zero():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 3
    f = F.normalize(torch.randn(2, 8, 5, 5, generator=g), dim=1)
    f[0, :, 1, 2] = F.normalize(centers[FOREGROUND], dim=0)
    f[1, :, 3, 3] = -F.normalize(centers[BOUNDARY], dim=0)
    d = center_distance(f, centers)
    assert d.shape == (2, 3, 5, 5)
    assert d[0, FOREGROUND, 1, 2] == pytest.approx(0.0, abs=1e-6)
    assert d[1, BOUNDARY, 3, 3] == pytest.approx(2.0, abs=1e-6)
    assert float(d.min()) >= -1e-6 and float(d.max()) <= 2 + 1e-6
    zero = center_distance(f, torch.zeros(3, 8))  # an unset center is "orthogonal" to everything
    torch.testing.assert_close(zero, torch.ones_like(zero))


def test_weighted_centers_and_ema():
    f = torch.zeros(1, 2, 1, 4)
    f[0, 0, 0, :2] = 1.0  # pixels 0, 1: feature e0
    f[0, 1, 0, 2:] = 1.0  # pixels 2, 3: feature e1
    region = torch.tensor([[[FOREGROUND, FOREGROUND, FOREGROUND, BACKGROUND]]])
    weight = torch.tensor([[[1.0, 1.0, 2.0, 0.0]]])  # the background pixel has no weight
    sums, mass = region_center_sums(f, region, weight)
    torch.testing.assert_close(sums[FOREGROUND] / mass[FOREGROUND], torch.tensor([0.5, 0.5]))
    assert mass[BACKGROUND] == 0 and mass[BOUNDARY] == 0
    c0, ready0 = torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool)
    c1, ready1 = ema_centers(c0, ready0, sums, mass, momentum=0.9)
    torch.testing.assert_close(c1[FOREGROUND], torch.tensor([0.5, 0.5]))  # first estimate taken as is
    assert ready1.tolist() == [False, True, False] and torch.equal(c1[BACKGROUND], c0[BACKGROUND])
    c2, _ = ema_centers(c1, ready1, torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]),
                        torch.tensor([0.0, 2.0, 0.0]), momentum=0.9)
    torch.testing.assert_close(c2[FOREGROUND], torch.tensor([0.9 * 0.5 + 0.1, 0.9 * 0.5]))


def test_gamma_is_own_distance_plus_boundary_affinity_with_mean_one():
    d = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.2, 0.3]]).T.reshape(1, 3, 1, 3)
    region = torch.tensor([[[BACKGROUND, BOUNDARY, FOREGROUND]]])
    g = dcd_gamma(d, region, temperature=0.1)
    own = torch.tensor([0.0, 0.0, 0.2])
    q = torch.softmax(-d / 0.1, dim=1)[0, BOUNDARY, 0]
    raw = own + q
    torch.testing.assert_close(g[0, 0], raw / raw.mean())
    assert float(g.mean()) == pytest.approx(1.0)
    assert g[0, 0, 1] > g[0, 0, 0]  # a pixel at the boundary center outweighs one at the background center


def test_soft_target_mixes_given_and_pseudo_labels():
    label = torch.tensor([[1, 1, 0]])
    pseudo = torch.tensor([[0, 1, 0]])
    alpha = torch.tensor([[0.3, 0.2, 0.0]])
    beta = torch.tensor([[0.1, 0.0, 0.0]])
    t, mask = soft_target(label, pseudo, alpha, beta, 2)
    torch.testing.assert_close(t[0, :, 0], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(t[0, :, 1], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(t[0, :, 2], torch.tensor([0.0, 0.0]))
    assert mask.tolist() == [[1.0, 1.0, 0.0]]


def test_given_label_dice_sees_over_segmentation_where_the_weights_are_zero():
    """4 labelled pixels predicted right, 4 more predicted foreground where α = β = 0: the
    paper's soft-target Dice ignores them (loss 0); Dice against the given labels does not
    (1 − 2·4/(8 + 4) = 1/3)."""
    label = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]])
    fg = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 0, 0]], dtype=torch.float32)
    probs = torch.stack([1 - fg, fg], 1)
    alpha = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0, 0, 0, 0, 0.3, 0.3]])
    beta = torch.zeros_like(alpha)
    soft = meta_dice_loss(probs, label, label, alpha, beta, "soft")
    given = meta_dice_loss(probs, label, label, alpha, beta, "given")
    assert float(soft) == pytest.approx(0.0, abs=1e-5)
    assert float(given) == pytest.approx(1 / 3, abs=1e-5)
    valid = torch.tensor([[True] * 4 + [False] * 4 + [True] * 2])  # unannotated pixels do not count
    assert float(meta_dice_loss(probs, label, label, alpha, beta, "given", valid)) == pytest.approx(0.0, abs=1e-5)


def test_params_are_validated():
    cls, params = validate_method(MethodConfig(name="metadcseg", params={"boundary_width": 5}))
    assert cls is get_method_class("metadcseg") and cls.needs_trusted and not cls.supports_amp
    assert params.dcd_start == 0.1 and params.center_momentum == 0.9 and params.temperature == 0.1
    assert params.dice_target == "soft"
    with pytest.raises(ConfigError, match="odd"):
        validate_method(MethodConfig(name="metadcseg", params={"boundary_width": 4}))
    with pytest.raises(ConfigError, match="did you mean"):
        validate_method(MethodConfig(name="metadcseg", params={"temprature": 0.2}))


@pytest.mark.parametrize("scope", ["all", "head"])
def test_training_step_logs_and_state(scope):
    """One step by hand: logs present, centers set, BN updated once (by the training forward)."""
    from noisyseg.nets import net_factory

    cls, params = validate_method(MethodConfig(name="metadcseg", params={
        "dcd_start": 0.0, "meta_start": 0.0, "pseudo_flip_average": True, "lookahead_scope": scope}))
    torch.manual_seed(0)
    make = net_factory(NetConfig(channels=[4, 8], features=4, num_res_units=0), 2, 1, 2)
    method = cls(params, make, 2, 2).train()
    g = torch.Generator().manual_seed(1)
    lab = torch.from_numpy(disk(16, 5, (8, 8)).astype(np.int64))[None].repeat(2, 1, 1)
    batch = {"image": torch.randn(2, 1, 16, 16, generator=g) + lab[:, None], "label": lab,
             "clean_label": torch.zeros_like(lab), "meta_image": torch.randn(2, 1, 16, 16, generator=g),
             "meta_label": lab}
    out = method.training_step(batch, StepInfo(0, 10))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for k in ("meta/alpha_mean", "meta/beta_mean", "meta/stage", "meta/wrong_label_weight_share",
              "meta/wrong_label_rate", "meta/gamma_boundary_mean"):
        assert k in out.logs, k
    assert out.logs["meta/stage"] == 2.0
    assert out.logs["meta/alpha_mean"] + out.logs["meta/beta_mean"] == pytest.approx(1.0, abs=1e-5)
    assert out.logs["meta/wrong_label_rate"] == pytest.approx(float(lab.float().mean()))
    assert bool(method.centers_ready.any())
    assert {"centers", "centers_ready"} <= set(method.state_dict())
    counts = {int(m.num_batches_tracked) for m in method.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert counts == {1}


def test_class_agreement_is_the_dice_of_the_least_found_foreground_class():
    label = torch.tensor([[0, 1, 1, 1, 1, 2, 2, 0]])
    pseudo = torch.tensor([[1, 1, 1, 0, 0, 2, 2, 2]])
    # class 1: 2 of 4 found, 3 predicted -> 4/7; class 2: 2 of 2 found, 3 predicted -> 4/5
    assert float(class_agreement(pseudo, label, 3)) == pytest.approx(4 / 7)
    assert float(class_agreement(pseudo, label, 4)) == pytest.approx(4 / 7)  # an absent class does not count
    valid = torch.tensor([[False, True, True, True, True, True, True, True]])
    assert float(class_agreement(pseudo, label, 3, valid)) == pytest.approx(2 / 3)  # class 1: 2 * 2 / (4 + 2)
    assert torch.isnan(class_agreement(pseudo, torch.zeros_like(label), 3))
    assert float(class_agreement(label, label, 3)) == pytest.approx(1.0)


def test_warmup_is_supervised_until_the_prediction_covers_the_classes():
    from noisyseg.methods.losses import ce_dice_loss
    from noisyseg.nets import net_factory

    cls, params = validate_method(MethodConfig(name="metadcseg", params={"meta_start": 0.5}))
    torch.manual_seed(0)
    method = cls(params, net_factory(NetConfig(channels=[4, 8], features=4, num_res_units=0), 2, 1, 2), 2, 2).train()
    lab = torch.from_numpy(disk(16, 5, (8, 8)).astype(np.int64))[None].repeat(2, 1, 1)
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2, 1, 16, 16, generator=g) + lab[:, None], "label": lab,
             "meta_image": torch.randn(2, 1, 16, 16, generator=g), "meta_label": lab}
    with torch.no_grad():  # training mode: the step's forward gives the same logits
        logits = method.net(batch["image"])
    out = method.training_step(batch, StepInfo(0, 10))
    assert out.logs["meta/stage"] == 0.0 and "meta/alpha_mean" not in out.logs
    torch.testing.assert_close(out.loss, ce_dice_loss(logits, lab))
    expected = 0.1 * float(class_agreement(logits.max(1).indices, lab, 2))
    assert float(method.warmup.agreement) == pytest.approx(expected) and out.logs["meta/agreement"] == pytest.approx(expected)
    assert not bool(method.warmup.meta_on)
    method.warmup.agreement.fill_(0.6)  # the running agreement passes meta_start at the next step
    method.training_step(batch, StepInfo(1, 10))
    assert bool(method.warmup.meta_on)
    state = method.state_dict()
    assert bool(state["warmup.meta_on"])  # a resumed run does not warm up again
    out = method.training_step(batch, StepInfo(2, 10))
    assert out.logs["meta/stage"] == 2.0 and "meta/alpha_mean" in out.logs


# ---------------------------------------------------------------------------------------
# end to end: systematic label noise, clean meta set, the real training loop
# ---------------------------------------------------------------------------------------

def make_noisy_dataset(root: Path, *, n_train=20, n_test=6, n_clean=3, size=64, seed=0, dilate=5) -> Path:
    """2D phantoms as PNG; every training label but the trusted ones dilated by `dilate` px
    (systematic over-segmentation), clean copies in labelsTr_clean/, clean test labels."""
    from noisyseg.data.phantoms import make_phantom
    from noisyseg.io import write_image, write_label

    for sub in ("imagesTr", "labelsTr", "labelsTr_clean", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True)
    ids = [f"ph_{i:03d}" for i in range(n_train + n_test)]
    cross = ndimage.generate_binary_structure(2, 1)
    for i, (cid, rng) in enumerate(zip(ids, np.random.default_rng(seed).spawn(len(ids)))):
        img, lab = make_phantom((size, size), rng, num_classes=2, fg_fraction=(0.1, 0.25))
        if i < n_train:
            noisy = lab if i < n_clean else ndimage.binary_dilation(lab > 0, cross, iterations=dilate)
            write_image(root / "imagesTr" / f"{cid}.png", img)
            write_label(root / "labelsTr" / f"{cid}.png", noisy.astype(np.uint8))
            write_label(root / "labelsTr_clean" / f"{cid}.png", lab)
        else:
            write_image(root / "imagesTs" / f"{cid}.png", img)
            write_label(root / "labelsTs" / f"{cid}.png", lab)
    (root / "dataset.json").write_text(json.dumps({
        "name": "noisy-phantoms", "tensorImageSize": "2D", "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "organ"},
        "training": [{"image": f"./imagesTr/{c}.png", "label": f"./labelsTr/{c}.png"} for c in ids[:n_train]],
        "test": [f"./imagesTs/{c}.png" for c in ids[n_train:]],
        "clean_cases": ids[:n_clean],
    }))
    return root


def _overrides(method: str, seed: int, steps: int) -> dict:
    return {"data": {"patch_size": [64, 64], "batch_size": 4, "val_fraction": 0.0},
            "net": {"arch": "unet", "channels": [8, 16, 32], "features": 8, "num_res_units": 0},
            "optim": {"lr": 3e-3},
            "train": {"max_steps": steps, "val_every": 10**6, "log_every": 1, "ckpt_every": 10**6,
                      "seed": seed, "device": "cpu"},
            "method": {"name": method}}


def _test_dice(root: Path, run: Path, out: Path) -> float:
    from noisyseg import api
    from noisyseg.io import read_file
    from noisyseg.metrics import dice_per_class

    api.predict(run=run, images=root / "imagesTs", out=out, progress=False)
    scores = [dice_per_class(read_file(out / f.name).array, read_file(f).array, 2)[1]
              for f in sorted((root / "labelsTs").iterdir())]
    return float(np.mean(scores))


@pytest.fixture
def one_thread():
    """One torch thread: tiny networks gain little from two, and spin-waiting threads slow a
    shared 2-core machine down many times over."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_short_run_downweights_wrong_labels_and_beats_supervised(tmp_path, one_thread):
    from noisyseg import api
    from noisyseg.data import open_dataset
    from noisyseg.methods.meta_weights import meta_pixel_weights

    seed, steps = int(os.environ.get("NOISYSEG_TEST_SEED", 0)), 120
    root = make_noisy_dataset(tmp_path / "data", seed=seed)
    dice = {}
    for key, method, params in (("supervised", "supervised", {}), ("metadcseg", "metadcseg", {}),
                                ("head", "metadcseg", {"lookahead_scope": "head"})):
        run = tmp_path / key
        overrides = _overrides(method, seed, steps)
        overrides["method"]["params"] = params
        api.train(data=root, out=run, overrides=overrides, progress=False)
        dice[key] = _test_dice(root, run, tmp_path / f"pred_{key}")
    assert dice["metadcseg"] > dice["supervised"] + 0.05, dice
    assert dice["head"] > dice["supervised"] + 0.05, dice  # the cheap head-only look-ahead too

    run = tmp_path / "metadcseg"
    figs = run / "figures"
    assert (figs / "metadcseg_weight_maps.png").stat().st_size > 0
    assert (figs / "metadcseg_curves.png").stat().st_size > 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert bool(state["method"]["centers_ready"].all())

    # the logged share of α on wrong labels sits well below the wrong-label rate once training
    # settles (medians over steps: a few steps' α concentrate on few pixels, so means are spiky)
    from noisyseg.report.figures import read_log

    for key in ("metadcseg", "head"):
        log = read_log(tmp_path / key / "train_log.csv")
        late = log["step"] > steps // 2
        share, rate = log["meta/wrong_label_weight_share"][late], log["meta/wrong_label_rate"][late]
        assert np.nanmedian(share) < 0.5 * np.nanmedian(rate), (key, np.nanmedian(share), np.nanmedian(rate))

    # the trained model's α on whole noisy training images against the trusted ones: lower where
    # the given label is wrong. With running BN statistics the weights are per-pixel local and the
    # means separate cleanly; with batch statistics (training mode) a few high-loss pixels couple
    # to the meta gradient through the batch moments, so there the test is on how many pixels keep
    # a positive weight.
    method, _, _ = api.load_run(run, "last", "cpu")
    ds = open_dataset(root)
    cases = [r.load() for r in ds.train]
    noisy = [c for c in cases if c.id not in ds.trusted_ids][:8]
    trusted = [c for c in cases if c.id in ds.trusted_ids]
    x = torch.from_numpy(np.stack([c.image for c in noisy]))
    y = torch.from_numpy(np.stack([c.label for c in noisy]))
    wrong = y != torch.from_numpy(np.stack([c.clean_label for c in noisy]))
    mx = torch.from_numpy(np.stack([c.image for c in trusted]))
    my = torch.from_numpy(np.stack([c.clean_label for c in trusted]))
    assert wrong.any() and (~wrong).any()
    mw = meta_pixel_weights(method.net.eval(), x, y, mx, my, lr=1e-3)
    assert float(mw.alpha[wrong].mean()) < 0.5 * float(mw.alpha[~wrong].mean())
    mw = meta_pixel_weights(method.net.train(), x, y, mx, my, lr=1e-3)
    assert float((mw.alpha[wrong] > 0).float().mean()) < 0.5 * float((mw.alpha[~wrong] > 0).float().mean())
