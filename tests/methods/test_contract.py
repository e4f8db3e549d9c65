"""The contract every registered method keeps, in 2D and 3D: a finite scalar loss, gradients
that reach every trainable parameter, float logs with loss terms under ``loss/``, a state-dict
round trip, and class probabilities that sum to 1.

Methods that need trusted cases get a meta batch as the training loop builds it
(``batch["meta_image"]``, ``batch["meta_label"]``: a batch of trusted cases of the same shape).
"""

from __future__ import annotations

import math

import pytest
import torch
from method_kit import random_batch, tiny_method  # tests/methods helper

from noisyseg.methods import available_methods, get_method_class
from noisyseg.methods.base import StepInfo

K = 3
SIZE = {2: 16, 3: 8}
PHASES = {"start": StepInfo(step=0, max_steps=20), "late": StepInfo(step=18, max_steps=20)}  # warm-ups over


def contract_batch(name: str, dims: int, seed: int = 0) -> dict[str, torch.Tensor]:
    batch = random_batch(dims, n=2, size=SIZE[dims], seed=seed, k=K)
    if get_method_class(name).needs_trusted:
        meta = random_batch(dims, n=2, size=SIZE[dims], seed=seed + 100, k=K, clean_rows=None)
        batch["meta_image"], batch["meta_label"] = meta["image"], meta["label"]
    return batch


def networks(method: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """Trainable parameters grouped by the method's top-level submodule (each network)."""
    out: dict[str, list[torch.nn.Parameter]] = {}
    for key, p in method.named_parameters():
        if p.requires_grad:
            out.setdefault(key.split(".")[0], []).append(p)
    return out


def test_every_method_module_is_covered():
    assert "supervised" in available_methods() and len(available_methods()) >= 10


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", available_methods())
def test_loss_gradients_and_logs(name, dims, phase, one_thread):
    method = tiny_method(name, dims=dims, k=K, train=True)
    out = method.training_step(contract_batch(name, dims), PHASES[phase])
    assert out.loss.ndim == 0 and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    nets = networks(method)
    assert nets, "a method trains at least one network"
    for net, params in nets.items():
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params), f"{name}.{net}"
    norms = {net: sum(float(p.grad.abs().sum()) for p in params) for net, params in nets.items()}
    if phase == "start":  # warm-ups train every network on every pixel
        assert all(v > 0 for v in norms.values()), norms
    else:  # after them a network may select no pixel of a batch (trinet's untrained peers agree nowhere)
        assert sum(norms.values()) > 0, norms
    for key, value in out.logs.items():
        assert type(value) is float, (key, value)  # one host copy per step, no tensors left behind
        assert not key.startswith("loss") or key.startswith("loss/"), key  # loss terms under loss/
        if key.startswith("loss/"):
            assert math.isfinite(value), (key, value)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", available_methods())
def test_state_dict_round_trip_and_probabilities(name, dims, one_thread):
    method = tiny_method(name, dims=dims, k=K, train=True)
    method.training_step(contract_batch(name, dims), PHASES["late"]).loss.backward()
    with torch.no_grad():
        for p in method.parameters():
            if p.grad is not None:
                p.sub_(0.1 * p.grad)
    method.after_step(PHASES["late"])  # EMA teachers update here
    state = method.state_dict()
    fresh = tiny_method(name, dims=dims, k=K, seed=1).eval()
    method.eval()
    x = contract_batch(name, dims, seed=5)["image"]
    with torch.no_grad():
        probs = method.predict_proba(x)
        assert not torch.allclose(fresh.predict_proba(x), probs)
        fresh.load_state_dict(state)
        for key, value in fresh.state_dict().items():
            assert torch.equal(value.nan_to_num(), state[key].nan_to_num()), key
        torch.testing.assert_close(fresh.predict_proba(x), probs)
    assert probs.shape == (2, K) + (SIZE[dims],) * dims and probs.dtype == torch.float32
    assert bool((probs >= 0).all())
    torch.testing.assert_close(probs.sum(1), torch.ones((2,) + (SIZE[dims],) * dims))


@pytest.mark.parametrize("name", [n for n in available_methods() if get_method_class(n).figure_groups])
def test_declared_figure_groups_name_logged_scalars(name, one_thread):
    """Every log group a method asks the loop to draw is logged by its late training steps
    (with clean labels in the batch, as in a benchmark)."""
    method = tiny_method(name, dims=2, k=K, train=True)
    out = method.training_step(contract_batch(name, 2), PHASES["late"])
    prefixes = {key.split("/")[0] for key in out.logs if "/" in key}
    assert set(get_method_class(name).figure_groups) <= prefixes, prefixes
