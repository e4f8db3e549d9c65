"""The slow reference of the per-pixel meta weights: explicit look-ahead and double backward.

It lives beside the tests (the package has only the fast route) and is shared by
test_meta_weights.py and benchmarks/bench_metadcseg.py.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from noisyseg.methods.losses import pixel_ce
from noisyseg.methods.meta_weights import ce_meta_loss
from noisyseg.methods.shared import frozen_norm_stats


def slow_reference(net, image, label, pseudo, meta_image, meta_label, lr, pixel_loss=pixel_ce, only=""):
    """w̃ = −∂L_meta(θ'(ε))/∂ε at ε = 0 with θ'(ε) = θ − η∇θ Σ(εʳℓʳ + εᵖℓᵖ), by double backward.

    `pseudo` None takes the argmax of the same forward pass. `only`: a parameter-name prefix;
    the look-ahead moves only those parameters ('head.' for the head's look-ahead).
    Returns (w̃ʳ, w̃ᵖ, pseudo, L_meta).
    """
    names = [k for k, p in net.named_parameters() if p.requires_grad and k.startswith(only)]
    params = [p for k, p in net.named_parameters() if p.requires_grad and k.startswith(only)]
    eps_r = torch.zeros(label.shape, dtype=image.dtype, device=image.device, requires_grad=True)
    eps_p = torch.zeros(label.shape, dtype=image.dtype, device=image.device, requires_grad=True)
    with frozen_norm_stats(net):
        logits = net(image)
        if pseudo is None:
            pseudo = logits.detach().argmax(1)
        inner = (eps_r * pixel_loss(logits, label)).sum() + (eps_p * pixel_loss(logits, pseudo)).sum()
        grads = torch.autograd.grad(inner, params, create_graph=True, allow_unused=True)
        look = {k: p if g is None else p - lr * g for k, p, g in zip(names, params, grads)}
        meta = ce_meta_loss(functional_call(net, look, (meta_image,), strict=False), meta_label)
        d_r, d_p = torch.autograd.grad(meta, (eps_r, eps_p))
    return -d_r, -d_p, pseudo, meta.detach()
