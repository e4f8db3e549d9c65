"""Data-parallel training through torchrun, for any method.

A method's `training_step` runs inside `torch.nn.parallel.DistributedDataParallel` (the
method's networks are its submodules), so gradient buckets are all-reduced while backward
still runs. Methods that take parameter gradients inside their step with
`torch.autograd.grad` (the meta-learned weights of `l2b` and `metadcseg`: DDP only
reduces gradients accumulated into `.grad` and documents no support for `autograd.grad`)
declare `ddp_compatible = False`; for them the loop averages every gradient in one flat
all-reduce after backward (DDP's result without its overlap).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class _TrainingStep(nn.Module):
    """`forward(batch, info)` is the method's `training_step`: what DDP wraps."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, torch.Tensor], info: Any) -> Any:
        return self.method.training_step(batch, info)


def ddp_training_step(method: nn.Module, device: torch.device) -> nn.Module:
    """The method's training step wrapped in DDP (rank 0's weights and buffers are broadcast
    on construction and its buffers before every step). Every trainable parameter must take
    part in every step's loss, as in every method shipped."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(_TrainingStep(method), device_ids=ids, output_device=None)


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Make every process start from rank 0's weights and buffers."""
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients(module: torch.nn.Module, world_size: int) -> None:
    """All-reduce and average the gradients of every parameter, in one flat buffer."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process when `flag` is true on any (a stop request agreed at a step boundary)."""
    if not info.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_main(value: Any, info: DistInfo) -> Any:
    """Rank 0's `value` (a picklable object) on every process."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_in_sync(module: torch.nn.Module) -> float:
    """Largest difference between any process's parameters and rank 0's; raises if they drifted
    apart (which would mean gradients were not averaged)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    if diff.item() > 1e-4:
        raise RuntimeError(f"distributed processes drifted apart (max parameter difference {diff.item():.3g})")
    return float(diff.item())
