"""L2B: the shared meta weights, the bootstrap loss by hand, no DCD, the trusted-batch requirement."""

from __future__ import annotations

import pytest
import torch

from noisyseg.config import MethodConfig
from noisyseg.errors import ConfigError
from noisyseg.methods import StepInfo, validate_method
from noisyseg.methods.losses import pixel_ce
from noisyseg.methods.meta_weights import meta_pixel_weights
from noisyseg.methods.shared import frozen_norm_stats

from method_kit import band_batch, tiny_method  # tests/methods helper


def make_method(dims=2, k=2, **params):
    """An l2b method in its meta stage (meta_start 0) unless told otherwise."""
    params.setdefault("meta_start", 0.0)
    return tiny_method("l2b", params, dims=dims, k=k, train=True)


def batch_for(dims=2, k=2, n=2, size=16, seed=1):
    """band_batch plus a clean meta batch of the same layout."""
    batch = band_batch(dims, k, n, size, seed)
    g = torch.Generator().manual_seed(seed + 100)
    meta_image = torch.randn(batch["image"].shape, generator=g) + batch["clean_label"][:, None].float()
    return {**batch, "meta_image": meta_image, "meta_label": batch["clean_label"]}

def test_params_and_registration():
    cls, p = validate_method(MethodConfig(name="l2b"))
    assert cls.name == "l2b" and cls.needs_trusted and not cls.supports_amp
    assert p.lookahead_lr == 1e-3 and p.pseudo_label == "prediction" and p.dice_weight == 1.0
    assert p.meta_start == 0.3
    with pytest.raises(ConfigError):
        validate_method(MethodConfig(name="l2b", params={"lookahead_lr": 0}))
    with pytest.raises(ConfigError, match="did you mean"):
        validate_method(MethodConfig(name="l2b", params={"lookahed_lr": 1e-2}))


def test_weights_are_the_shared_meta_pixel_weights(monkeypatch):
    """The step calls meta_weights.meta_pixel_weights and trains on exactly its α, β and ŷ."""
    method = make_method(dice_weight=0.0)  # the weighted CE alone
    batch = batch_for()
    # reference, computed before the step on the same network state
    ref = meta_pixel_weights(method.net, batch["image"], batch["label"], batch["meta_image"], batch["meta_label"],
                             lr=method.params.lookahead_lr)
    with torch.no_grad(), frozen_norm_stats(method.net):
        logits = method.net(batch["image"]).float()
    manual = (ref.alpha * pixel_ce(logits, batch["label"]) + ref.beta * pixel_ce(logits, ref.pseudo_label)).sum()

    calls = []

    def spy(*args, **kwargs):
        out = meta_pixel_weights(*args, **kwargs)
        calls.append(out)
        return out

    from noisyseg.methods import meta_weights

    monkeypatch.setattr(meta_weights, "meta_pixel_weights", spy)  # the code MetaDCSeg uses too
    out = method.training_step(batch, StepInfo(0, 10))
    assert len(calls) == 1
    mw = calls[0]
    torch.testing.assert_close(mw.alpha, ref.alpha)
    torch.testing.assert_close(mw.beta, ref.beta)
    assert torch.equal(mw.pseudo_label, ref.pseudo_label)
    assert out.loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert out.logs["meta/alpha_mean"] == pytest.approx(float(ref.alpha.sum()), rel=1e-5)
    assert out.logs["meta/beta_mean"] == pytest.approx(float(ref.beta.sum()), rel=1e-5)
    assert out.logs["meta/alpha_mean"] + out.logs["meta/beta_mean"] == pytest.approx(1.0, abs=1e-5)


def test_wrong_label_weight_share_by_hand():
    method = make_method()
    batch = batch_for()
    mw = method.compute_weights(batch["image"], batch["label"], batch["meta_image"], batch["meta_label"])
    out = method.training_step(batch, StepInfo(0, 10))
    wrong = batch["label"] != batch["clean_label"]
    assert wrong.any()
    assert out.logs["meta/wrong_label_rate"] == pytest.approx(float(wrong.float().mean()))
    share = float(mw.alpha[wrong].sum() / mw.alpha.sum())
    assert out.logs["meta/wrong_label_weight_share"] == pytest.approx(share, rel=1e-4, abs=1e-7)
    wrong_p = mw.pseudo_label != batch["clean_label"]
    total = float(mw.alpha[wrong].sum() + mw.beta[wrong_p].sum())
    assert out.logs["meta/wrong_target_weight"] == pytest.approx(total, rel=1e-4, abs=1e-7)


def test_no_dcd_state():
    method = make_method()
    assert all(key.startswith(("net.", "warmup.")) for key in method.state_dict())
    assert not hasattr(method, "centers")
    out = method.training_step(batch_for(), StepInfo(9, 10))  # late in training: no stage 2
    assert not any("gamma" in k or "stage" in k or "boundary" in k for k in out.logs)


def test_missing_meta_batch_is_a_clear_error():
    method = make_method()
    batch = batch_for()
    del batch["meta_image"], batch["meta_label"]
    with pytest.raises(ConfigError, match="trusted"):
        method.training_step(batch, StepInfo(0, 10))


@pytest.mark.parametrize("dims,k", [(2, 2), (3, 3)])
def test_training_step_backward_2d_3d(dims, k):
    method = make_method(dims, k, dice_weight=0.5, pseudo_label="flip_average")
    batch = batch_for(dims, k, size=16 if dims == 2 else 8)
    out = method.training_step(batch, StepInfo(0, 10))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logs["loss/dice"] > 0
    assert out.loss.item() == pytest.approx(out.logs["loss/weighted_ce"] + 0.5 * out.logs["loss/dice"], rel=1e-5)
    assert all(p.grad is not None for p in method.net.parameters())
    bn = nn_batchnorm(dims)
    counts = {int(m.num_batches_tracked) for m in method.modules() if isinstance(m, bn)}
    assert counts == {1}  # only the training forward updated the running statistics


def nn_batchnorm(dims):
    return torch.nn.BatchNorm2d if dims == 2 else torch.nn.BatchNorm3d


def test_stage_zero_trains_on_the_given_labels_until_the_network_finds_the_classes():
    method = make_method(meta_start=0.3, dice_weight=0.0)
    batch = batch_for()
    with torch.no_grad():
        logits = method.net(batch["image"]).float()
    out = method.training_step(batch, StepInfo(0, 10))
    assert out.logs["meta/stage"] == 0.0 and "meta/alpha_mean" not in out.logs
    torch.testing.assert_close(out.loss, pixel_ce(logits, batch["label"]).mean())  # dice_weight 0: CE alone
    method.warmup.agreement.fill_(0.5)
    method.training_step(batch, StepInfo(1, 10))
    out = method.training_step(batch, StepInfo(2, 10))
    assert "meta/alpha_mean" in out.logs
