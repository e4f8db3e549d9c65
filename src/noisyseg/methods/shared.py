"""Helpers that several methods share: batch-norm statistics held still, and flip-averaged
predictions (test-time augmentation of the training networks' pseudo labels).

- :func:`frozen_norm_stats`: a context in which no batch-norm layer updates its running
  statistics (meta-weight look-aheads, MTCL's teacher, flip averaging).
- :func:`flip_averaged_probs`: softmax (N, K, *S) averaged over the identity and one flip
  per spatial axis (MetaDCSeg / L2B pseudo labels, ADELE's corrected labels).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def frozen_norm_stats(net: nn.Module) -> Iterator[None]:
    """Within the block, no batch-norm layer of `net` updates its running statistics or
    `num_batches_tracked`; training-mode layers still normalise with batch statistics,
    eval-mode layers with the running ones. Restores the layers' settings on exit."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True



def flip_averaged_probs(net: torch.nn.Module, image: torch.Tensor, probs: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """Softmax (N, K, *S) float32 averaged over the identity and a flip along each spatial axis.

    `probs`, the softmax of `net(image)` when the caller already has it, saves that forward.
    No gradient; batch-norm running statistics untouched.
    """
    dims = list(range(2, image.ndim))
    with torch.no_grad(), frozen_norm_stats(net):
        total = torch.softmax(net(image).float(), 1) if probs is None else probs.detach().float().clone()
        for d in dims:
            total += torch.softmax(net(image.flip(d)).float(), 1).flip(d)
    return total / (1 + len(dims))
