"""engine/setup.py: place_method puts the method on its device in the configured memory order."""

import pytest
import torch


@pytest.mark.parametrize("dims,fmt", [(2, torch.channels_last), (3, torch.channels_last_3d)])
def test_channels_last_placement_computes_the_same_step(dims, fmt):
    """`net.memory_format: auto` on CPU reorders the conv weights channels-last; the loss and
    every gradient match the contiguous network's."""
    from noisyseg.config import RunConfig
    from noisyseg.engine.setup import build_method, place_method
    from noisyseg.methods.losses import ce_dice_loss

    shape = (2, 1, 16, 16) if dims == 2 else (2, 1, 16, 16, 8)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0.3).long()
    grads, losses = {}, {}
    for mode in ("contiguous", "auto"):
        cfg = RunConfig.model_validate({"net": {"channels": [4, 8, 16], "features": 4, "memory_format": mode}})
        m = place_method(build_method(cfg, 1, 2, dims), torch.device("cpu"), cfg, dims)
        conv = next(p for p in m.parameters() if p.ndim == dims + 2 and p.shape[1] > 1)  # C=1 is both orders
        assert conv.is_contiguous(memory_format=fmt) == (mode == "auto")
        loss = ce_dice_loss(m.net(x), y)
        loss.backward()
        losses[mode] = loss.detach()
        grads[mode] = [p.grad.clone() for p in m.parameters()]
    torch.testing.assert_close(losses["auto"], losses["contiguous"], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads["auto"], grads["contiguous"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
