"""Unannotated pixels (nnU-Net's "ignore" label) take no part in any method's loss.

The sampler hands methods labels filled with class 0 at ignored pixels plus ``batch["valid"]``;
whatever class sits under an ignored pixel must leave the loss and every gradient unchanged.
"""

from __future__ import annotations

import copy

import pytest
import torch
from method_kit import random_batch, tiny_method  # tests/methods helper

from noisyseg.methods import available_methods
from noisyseg.methods.base import StepInfo

DICE_ON = {"gce": {"dice": True}, "sce": {"dice": True}, "coteaching": {"dice": True}, "trinet": {"dice": True},
           "clcs": {"dice_pixels": "all"}}


def _step(method, batch: dict, info: StepInfo) -> tuple[torch.Tensor, torch.Tensor]:
    m = copy.deepcopy(method)
    if m.name == "adele":
        m.active[:] = True  # label correction on from the first step
    torch.manual_seed(7)
    out = m.training_step(batch, info)
    shares = [v for k, v in out.logs.items() if k.startswith(("clean_frac/", "kept/"))]
    assert all(0.0 <= v <= 1.0 for v in shares), out.logs  # shares of the annotated pixels
    out.loss.backward()
    g = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                   for p in m.parameters() if p.requires_grad])
    return out.loss.detach(), g


def _variant(batch: dict, fill: int, with_valid: bool) -> dict:
    b = {k: v.clone() for k, v in batch.items()}
    for key, vkey in (("label", "valid"), ("meta_label", "meta_valid")):
        b[key] = torch.where(batch[vkey], batch[key], torch.full_like(batch[key], fill))
        if not with_valid:
            del b[vkey]
    return b


@pytest.mark.parametrize("name", available_methods())
def test_ignored_pixels_change_no_loss_and_no_gradient(name, one_thread):
    method = tiny_method(name, DICE_ON.get(name), k=3, train=True)
    batch = random_batch(k=3, clean_rows=None)
    valid = torch.ones_like(batch["label"], dtype=torch.bool)
    valid[:, 4:12, 2:9] = False  # a block of unannotated pixels in each sample
    meta = random_batch(k=3, seed=3, clean_rows=None)
    batch.update(valid=valid, meta_image=meta["image"], meta_label=meta["label"], meta_valid=valid.clone())
    info = StepInfo(step=18, max_steps=20)  # past every warm-up: selections, CL and meta weights are on

    loss0, g0 = _step(method, _variant(batch, 0, True), info)
    loss2, g2 = _step(method, _variant(batch, 2, True), info)
    assert torch.isfinite(loss0)
    torch.testing.assert_close(loss2, loss0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g2, g0, rtol=1e-4, atol=1e-6)
    # the same two labels read as annotated do change the loss: the mask is what makes them equal
    loss0_all, _ = _step(method, _variant(batch, 0, False), info)
    loss2_all, _ = _step(method, _variant(batch, 2, False), info)
    assert not torch.allclose(loss0_all, loss2_all, rtol=1e-5, atol=1e-6)
