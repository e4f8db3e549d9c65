"""Training batches through a `torch.utils.data.DataLoader`: worker processes, prefetching
and pinned memory, with the batch of a step still a pure function of (seed, step, rank).

The loader's dataset is indexed by step, and its sampler yields the steps still to run, so
the number of workers (0 included) never changes a batch and a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from .sampling import PatchSampler


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_num_workers(device_type: str) -> int:
    """Workers when `data.num_workers` is not set: the cores this process may use (shared
    with the other torchrun processes of the node) less one for the training process on a
    GPU, less the training process's torch threads on the CPU (workers only take spare
    cores there); at most 8."""
    per_process = available_cores() // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    spare = per_process - (1 if device_type == "cuda" else torch.get_num_threads())
    return max(0, min(8, spare))


def _worker_signals(worker_id: int) -> None:
    """Workers leave Ctrl-C to the training process, which checkpoints and then shuts them
    down. SIGTERM ends a worker with status 0 by unwinding it (KeyboardInterrupt, which the
    worker loop treats as a normal exit): a worker killed by the signal would make the
    DataLoader raise in the training process wherever it stands, before it can checkpoint,
    and one ended by `os._exit` may die holding a lock it shares with that process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


_LABEL_KEYS = ("label", "clean_label", "meta_label")


class StepBatches(torch.utils.data.Dataset):
    """Item `step` is the training batch of that step on process `rank`: the keys of
    `PatchSampler.batch`, plus meta_image / meta_label from `meta` (a trusted-case sampler);
    labels travel as uint8 when the classes fit (an eighth of the bytes between processes
    and to the GPU), `to_device` restores int64."""

    def __init__(self, sampler: PatchSampler, meta: PatchSampler | None, rank: int, max_steps: int):
        self.sampler, self.meta, self.rank, self.max_steps = sampler, meta, rank, max_steps

    def __len__(self) -> int:
        return self.max_steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.sampler.batch(step, self.rank)
        if self.meta is not None:
            m = self.meta.batch(step, self.rank)
            batch["meta_image"], batch["meta_label"] = m["image"], m["label"]
            if "valid" in m:
                batch["meta_valid"] = m["valid"]
        for k in _LABEL_KEYS:
            if k in batch and 0 <= int(batch[k].min()) and int(batch[k].max()) < 256:  # ignored pixels: -1
                batch[k] = batch[k].to(torch.uint8)
        return batch


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on `device` (asynchronous copies from pinned memory), labels as int64."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    for k in _LABEL_KEYS:
        if k in out:
            out[k] = out[k].long()
    return out


def step_batches(sampler: PatchSampler, meta: PatchSampler | None, *, rank: int, start: int, max_steps: int,
                 num_workers: int, pin_memory: bool, prefetch_factor: int = 2) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of steps start..max_steps-1, in order.

    Args:
        sampler, meta: the training sampler and the optional trusted-case sampler.
        rank: the torchrun process rank (each draws its own batches).
        start: the first step (a resumed run's checkpoint step).
        num_workers: worker processes (0: batches drawn in this process).
        pin_memory: page-locked batches for asynchronous copies to a GPU.
        prefetch_factor: batches each worker prepares ahead.
    """
    ds = StepBatches(sampler, meta, rank, max_steps)
    if num_workers == 0:
        return (ds[s] for s in range(start, max_steps))
    loader = DataLoader(
        ds, batch_size=None, sampler=range(start, max_steps), num_workers=num_workers, pin_memory=pin_memory,
        prefetch_factor=prefetch_factor, persistent_workers=False, worker_init_fn=_worker_signals,
        # an explicit generator: creating the iterator must not draw from the global torch RNG
        # (methods use it, and a resumed run creates its iterator at another step)
        generator=torch.Generator().manual_seed(0),
    )
    return _Fallback(ds, iter(loader), start)


class _Fallback:
    """The loader's batches; should its workers be gone (a SIGTERM to the whole process group
    stops them before the training process has checkpointed), the remaining batches are drawn
    in this process: the same batches, since they depend on the step alone."""

    def __init__(self, ds: StepBatches, it: Iterator, start: int):
        self.ds, self.it, self.step = ds, it, start

    def __iter__(self) -> "_Fallback":
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.step >= len(self.ds):
            raise StopIteration
        if self.it is not None:
            try:
                batch = next(self.it)
            except (RuntimeError, OSError, EOFError) as exc:  # a worker exited (perhaps mid-hand-over);
                # an error of the sampler itself recurs below, in this process
                warnings.warn(f"DataLoader workers stopped ({exc}); drawing batches in the training process",
                              stacklevel=2)
                self.it = None
        if self.it is None:
            batch = self.ds[self.step]
        self.step += 1
        return batch
