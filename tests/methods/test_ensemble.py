"""`ensemble`: its loss is the sum of each network's CE + Dice and its prediction the mean of their
softmax, both against values computed by hand from the networks themselves."""

from __future__ import annotations

import pytest
import torch

from method_kit import random_batch, tiny_method
from noisyseg.errors import ConfigError
from noisyseg.methods.base import StepInfo
from noisyseg.methods.losses import ce_dice_loss


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_is_the_sum_of_each_networks_supervised_loss(dims, one_thread):
    method = tiny_method("ensemble", {"networks": 3}, dims=dims, train=True)
    batch = random_batch(dims, size=16 if dims == 2 else 8)
    out = method.training_step(batch, StepInfo(step=0, max_steps=10))
    by_hand = [ce_dice_loss(net(batch["image"]), batch["label"]) for net in method.nets]
    assert len(method.nets) == 3
    assert torch.allclose(out.loss, sum(by_hand))
    for i, loss in enumerate(by_hand):
        assert out.logs[f"loss/net{i + 1}"] == pytest.approx(float(loss), rel=1e-6)


def test_prediction_is_the_mean_of_the_networks_softmax_and_the_networks_differ(one_thread):
    method = tiny_method("ensemble", dims=2).eval()
    x = random_batch(2)["image"]
    p1, p2 = (torch.softmax(net(x), 1) for net in method.nets)
    assert not torch.allclose(p1, p2)  # distinct initialisations
    assert torch.allclose(method.predict_proba(x), (p1 + p2) / 2)


def test_each_network_gets_the_gradient_of_its_own_loss_only(one_thread):
    method = tiny_method("ensemble", dims=2, train=True)
    batch = random_batch(2)
    method.training_step(batch, StepInfo(step=0, max_steps=10)).loss.backward()
    alone = tiny_method("supervised", dims=2, train=True)
    alone.net.load_state_dict(method.nets[1].state_dict())
    alone.training_step(batch, StepInfo(step=0, max_steps=10)).loss.backward()
    for a, b in zip(method.nets[1].parameters(), alone.net.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_fewer_than_two_networks_is_refused():
    with pytest.raises(ConfigError, match="networks"):
        tiny_method("ensemble", {"networks": 1})
