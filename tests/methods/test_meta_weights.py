"""The fast (meta-gradient + one jvp) pixel weights against a slow double-backward look-ahead."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from noisyseg.config import NetConfig
from noisyseg.methods.meta_weights import (
    MetaWeights,
    balanced_ce_meta_loss,
    head_meta_pixel_weights,
    meta_pixel_weights,
    normalise_weights,
    renormalise,
    weights_for_step,
)
from noisyseg.methods.shared import frozen_norm_stats
from noisyseg.nets import net_factory

from meta_reference import slow_reference  # tests/methods helper


def tiny_net(seed: int = 0, dims: int = 2):
    torch.manual_seed(seed)
    cfg = NetConfig(arch="unet", channels=[4, 8], features=4, num_res_units=0)
    net = net_factory(cfg, dims, 1, 3)().double()
    assert any(isinstance(m, torch.nn.BatchNorm2d if dims == 2 else torch.nn.BatchNorm3d) for m in net.modules())
    return net


def ce64(logits, target):
    """Per-pixel CE in the logits' own dtype (`pixel_ce` computes in float32), for float64 checks."""
    return F.cross_entropy(logits, target, reduction="none")


def _batch(seed, shape=(16, 16), n=2, k=3):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn((n, 1) + shape, generator=g, dtype=torch.float64)
    label = torch.randint(0, k, (n,) + shape, generator=g)
    return image, label


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fast_weights_match_double_backward(mode):
    net = tiny_net()
    getattr(net, mode)()
    with torch.no_grad():  # non-trivial running statistics, so eval mode is a real check
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    image, label = _batch(1)
    meta_image, meta_label = _batch(2)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    lr = 0.05
    fast = meta_pixel_weights(net, image, label, meta_image, meta_label, lr=lr, pixel_loss=ce64)
    assert fast.raw_real.dtype == torch.float64
    for k, v in net.named_buffers():  # running_mean/var and num_batches_tracked untouched
        assert torch.equal(v, buffers[k]), k
    for k, v in net.named_parameters():
        assert torch.equal(v, params[k]) and v.grad is None, k

    ref_r, ref_p, _, _ = slow_reference(net, image, label, fast.pseudo_label, meta_image, meta_label, lr, ce64)
    scale = torch.cat([ref_r.flatten(), ref_p.flatten()]).abs().max()
    assert scale > 0
    assert (ref_r < 0).any() and (ref_r > 0).any()  # a non-trivial comparison
    torch.testing.assert_close(fast.raw_real, ref_r, rtol=1e-5, atol=1e-5 * float(scale))
    torch.testing.assert_close(fast.raw_pseudo, ref_p, rtol=1e-5, atol=1e-5 * float(scale))
    # the pseudo-label is the argmax of the network's own prediction on the batch
    with frozen_norm_stats(net), torch.no_grad():
        assert torch.equal(fast.pseudo_label, net(image).argmax(1))


def test_fast_weights_3d_and_given_pseudo_label():
    """3D, a pseudo-label given from outside, and the default (float32) `pixel_ce` loss maps."""
    net = tiny_net(seed=3, dims=3).train()
    image, label = _batch(4, shape=(8, 8, 8), n=2)
    meta_image, meta_label = _batch(5, shape=(8, 8, 8), n=1)
    pseudo = torch.randint(0, 3, label.shape, generator=torch.Generator().manual_seed(9))
    fast = meta_pixel_weights(net, image, label, meta_image, meta_label, lr=1.0, pseudo_label=pseudo)
    ref_r, ref_p, _, _ = slow_reference(net, image, label, pseudo, meta_image, meta_label, 1.0)
    scale = float(torch.cat([ref_r.flatten(), ref_p.flatten()]).abs().max())
    torch.testing.assert_close(fast.raw_real.double(), ref_r, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(fast.raw_pseudo.double(), ref_p, rtol=1e-5, atol=1e-5 * scale)
    assert torch.equal(fast.pseudo_label, pseudo)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_head_scope_matches_double_backward_of_a_head_only_lookahead(mode):
    net = getattr(tiny_net(seed=5), mode)()
    image, label = _batch(6)
    meta_image, meta_label = _batch(7, n=3)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    with frozen_norm_stats(net), torch.no_grad():
        features = net.features(image)
    fast = head_meta_pixel_weights(net, features, label, meta_image, meta_label, lr=0.5, pixel_loss=ce64)
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    ref_r, ref_p, _, _ = slow_reference(net, image, label, fast.pseudo_label, meta_image, meta_label, 0.5, ce64,
                                        only="head.")
    assert (ref_r < 0).any() and (ref_r > 0).any()
    scale = float(torch.cat([ref_r.flatten(), ref_p.flatten()]).abs().max())
    torch.testing.assert_close(fast.raw_real, ref_r, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(fast.raw_pseudo, ref_p, rtol=1e-5, atol=1e-5 * scale)
    # it is a different (cheaper) look-ahead from the whole network's
    full = meta_pixel_weights(net, image, label, meta_image, meta_label, lr=0.5, pixel_loss=ce64)
    assert not torch.allclose(full.raw_real, fast.raw_real, rtol=1e-2)


def test_head_scope_is_the_last_layer_kernel():
    """w̃_i = (η/M) Σ_j (δ_i·δ_j)(f_i·f_j + 1) over the M meta pixels, by brute force."""
    net = tiny_net(seed=8).train()
    image, label = _batch(9, shape=(8, 8))
    meta_image, meta_label = _batch(10, shape=(8, 8), n=1)
    with frozen_norm_stats(net), torch.no_grad():
        f = net.features(image)
        fm = net.features(meta_image)
        pseudo = net.head(f).argmax(1)
    fast = head_meta_pixel_weights(net, f, label, meta_image, meta_label, lr=2.0, pixel_loss=ce64,
                                   meta_loss=lambda z, y: ce64(z, y).mean())
    assert torch.equal(fast.pseudo_label, pseudo)

    def delta(feats, target):  # (P, K) softmax − onehot of every pixel
        z = net.head(feats).detach()
        return (torch.softmax(z, 1) - F.one_hot(target, 3).movedim(-1, 1)).movedim(1, -1).reshape(-1, 3)

    f_i, f_j = f.movedim(1, -1).reshape(-1, f.shape[1]), fm.movedim(1, -1).reshape(-1, fm.shape[1])
    kernel = f_i @ f_j.T + 1.0  # (P, M)
    d_j = delta(fm, meta_label)
    m = d_j.shape[0]
    for target, raw in ((label, fast.raw_real), (pseudo, fast.raw_pseudo)):
        expect = 2.0 / m * ((delta(f, target) @ d_j.T) * kernel).sum(1)
        torch.testing.assert_close(raw.reshape(-1), expect, rtol=1e-9, atol=1e-12)


def test_weights_for_step_head_scope_computes_features_itself():
    net = tiny_net(seed=11).train()
    image, label = _batch(12)
    meta_image, meta_label = _batch(13)
    with frozen_norm_stats(net), torch.no_grad():
        features = net.features(image)
    given = weights_for_step(net, image, label, meta_image, meta_label, lr=1.0, scope="head", features=features)
    own = weights_for_step(net, image, label, meta_image, meta_label, lr=1.0, scope="head")
    torch.testing.assert_close(given.alpha, own.alpha)
    torch.testing.assert_close(given.beta, own.beta)
    assert net.training


def test_normalisation_sums_to_one_and_zeroes_negatives():
    raw_r = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    raw_p = torch.tensor([[-1.0, 4.0], [0.0, 2.0]])
    a, b, uniform = normalise_weights(raw_r, raw_p)
    assert not uniform
    assert float(a.sum() + b.sum()) == pytest.approx(1.0)
    assert torch.equal(a == 0, raw_r <= 0) and torch.equal(b == 0, raw_p <= 0)
    torch.testing.assert_close(a, torch.tensor([[0.1, 0.0], [0.3, 0.0]]))
    torch.testing.assert_close(b, torch.tensor([[0.0, 0.4], [0.0, 0.2]]))


def test_normalisation_all_non_positive_is_uniform():
    a, b, uniform = normalise_weights(-torch.ones(2, 3), torch.zeros(2, 3))
    assert uniform
    torch.testing.assert_close(a, torch.full((2, 3), 1 / 12))
    torch.testing.assert_close(b, torch.full((2, 3), 1 / 12))


def _mw(raw_r, raw_p):
    z = torch.zeros_like(raw_r)
    return MetaWeights(z, z, raw_r, raw_p, z.long(), torch.tensor(0.0), torch.tensor(False))


def test_class_normalisation_keeps_each_class_share_and_moves_weight_within_it():
    # 1 x 6 pixels, given labels 0 0 0 0 1 1 (class 1: a third of the pixels)
    label = torch.tensor([[0, 0, 0, 0, 1, 1]])
    raw_r = torch.tensor([[4.0, 4.0, 0.0, -1.0, 0.001, -5.0]])  # class 1's weights tiny next to class 0's
    raw_p = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.003, 0.0]])
    out = renormalise(_mw(raw_r, raw_p), groups=label, num_groups=2)
    share = out.alpha + out.beta
    assert float(share[label == 0].sum()) == pytest.approx(4 / 6)
    assert float(share[label == 1].sum()) == pytest.approx(2 / 6)
    # within a class in proportion to max(raw, 0): class 1 has 0.001 + 0.003 of positive mass
    torch.testing.assert_close(out.alpha[0, 4:], torch.tensor([2 / 6 * 0.25, 0.0]))
    torch.testing.assert_close(out.beta[0, 4:], torch.tensor([2 / 6 * 0.75, 0.0]))
    torch.testing.assert_close(out.alpha[0, :4], torch.tensor([2 / 6, 2 / 6, 0.0, 0.0]))
    assert not bool(out.uniform)
    # the batch normalisation would have given class 1 almost nothing
    batch = renormalise(_mw(raw_r, raw_p))
    assert float((batch.alpha + batch.beta)[label == 1].sum()) < 1e-3


def test_class_normalisation_falls_back_to_uniform_within_a_class_and_skips_unannotated_pixels():
    label = torch.tensor([[0, 0, 1, 1, 2]])
    raw_r = torch.tensor([[1.0, 3.0, -1.0, -2.0, 5.0]])
    raw_p = torch.zeros(1, 5)
    valid = torch.tensor([[True, True, True, True, False]])
    out = renormalise(_mw(raw_r, raw_p), valid=valid, groups=label, num_groups=3)
    assert bool(out.uniform)  # class 1 had no positive weight
    torch.testing.assert_close(out.alpha[0], torch.tensor([0.125, 0.375, 0.125, 0.125, 0.0]))
    torch.testing.assert_close(out.beta[0], torch.tensor([0.0, 0.0, 0.125, 0.125, 0.0]))
    assert float(out.alpha.sum() + out.beta.sum()) == pytest.approx(1.0)


def test_balanced_meta_loss_is_the_mean_of_per_class_mean_ce():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    label = torch.zeros(2, 4, 5, dtype=torch.long)
    label[0, 0, :2] = 2  # class 2: two pixels, class 1 absent
    ce = F.cross_entropy(logits, label, reduction="none")
    expected = (ce[label == 0].mean() + ce[label == 2].mean()) / 2
    torch.testing.assert_close(balanced_ce_meta_loss(logits, label), expected)
    weight = torch.ones(2, 4, 5)
    weight[0, 0, 0] = 0.0  # an unannotated pixel counts nowhere
    expected_w = (ce[label == 0].mean() + ce[0, 0, 1]) / 2
    torch.testing.assert_close(balanced_ce_meta_loss(logits, label, weight), expected_w)
