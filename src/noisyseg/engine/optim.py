"""The optimiser of a run and its poly learning-rate schedule."""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..methods import Method


def make_optimizer(cfg: RunConfig, method: Method) -> torch.optim.Optimizer:
    """`optim.name` (sgd, adam or adamw) over the method's trainable parameters."""
    o = cfg.optim
    params = [p for p in method.parameters() if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def set_poly_lr(optimizer: torch.optim.Optimizer, cfg: RunConfig, step: int) -> float:
    """lr_t = lr · (1 − t / max_steps) ** poly_power, set on every parameter group."""
    lr = cfg.optim.lr * (1.0 - step / cfg.train.max_steps) ** cfg.optim.poly_power
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr
