"""Tiny networks and batches shared by the method tests."""

from __future__ import annotations

import torch

from noisyseg.config import MethodConfig, NetConfig
from noisyseg.methods import validate_method
from noisyseg.nets import net_factory


def tiny_method(name: str, params: dict | None = None, *, dims: int = 2, k: int = 3, seed: int = 0,
                train: bool = False):
    """A method with 2-level, 4-feature U-Nets (initialised from `seed`)."""
    cls, p = validate_method(MethodConfig(name=name, params=params or {}))
    torch.manual_seed(seed)
    make = net_factory(NetConfig(channels=[4, 8], features=4, num_res_units=0), dims, 1, k)
    method = cls(p, make, k, dims)
    return method.train() if train else method


def random_batch(dims: int = 2, n: int = 2, size: int = 16, seed: int = 0, *, k: int = 3,
                 clean_rows: int | None = 3) -> dict[str, torch.Tensor]:
    """Random image and labels; `clean_label` equals the labels except the first `clean_rows`
    rows, which are background (None: no clean label)."""
    g = torch.Generator().manual_seed(seed)
    shape = (size,) * dims
    label = torch.randint(0, k, (n, *shape), generator=g)
    batch = {"image": torch.randn(n, 1, *shape, generator=g), "label": label}
    if clean_rows is not None:
        clean = label.clone()
        clean[:, :clean_rows] = 0
        batch["clean_label"] = clean
    return batch


def band_batch(dims: int = 2, k: int = 2, n: int = 2, size: int = 16, seed: int = 1) -> dict[str, torch.Tensor]:
    """A centred box (class 1, a class-2 corner when k > 2) in noise; the given label adds a
    wrong foreground band just outside the box."""
    g = torch.Generator().manual_seed(seed)
    shape = (n,) + (size,) * dims
    clean = torch.zeros(shape, dtype=torch.long)
    clean[(slice(None),) + (slice(size // 4, 3 * size // 4),) * dims] = 1
    if k > 2:
        clean[(slice(None),) + (slice(size // 4, size // 2),) * dims] = 2
    label = clean.clone()
    label[(slice(None), size // 4 - 1) + (slice(size // 4, 3 * size // 4),) * (dims - 1)] = 1  # wrong band
    image = torch.randn((n, 1) + shape[1:], generator=g) + clean[:, None].float()
    return {"image": image, "label": label, "clean_label": clean}


def grads(net: torch.nn.Module) -> torch.Tensor:
    """All parameter gradients of a network, flattened."""
    return torch.cat([p.grad.flatten() for p in net.parameters()])
