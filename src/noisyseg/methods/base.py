"""The seam between the shared training loop and a training method.

A method is an `nn.Module` that owns its networks and its state (EMA thresholds,
feature centers, a teacher network) as submodules and buffers, so one `state_dict()`
saves and restores everything. It turns a batch into a loss and scalar logs; the loop
does the rest (devices, AMP, optimiser, schedule, logging, validation, checkpoints,
distributed gradient averaging).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..config import StrictModel
from ..data.case import Case
from ..nets import SegNet


@dataclass
class StepInfo:
    """Where training stands: `step` counts from 0 to `max_steps - 1`."""

    step: int
    max_steps: int

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1)."""
        return self.step / max(self.max_steps, 1)


@dataclass
class StepOutput:
    """A training step's result: the loss to minimise and scalars to log."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class NoParams(StrictModel):
    """For methods without parameters."""


class Method(nn.Module):
    """Base class of every training method.

    Subclasses set `name`, `Params` (a StrictModel of their hyper-parameters), and
    implement `training_step`; `predict_proba` defaults to softmax of `self.net`.

    Args:
        params: the validated method parameters.
        make_net: builds a fresh SegNet per call.
        num_classes: K, background included.
        spatial_dims: 2 or 3.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrictModel]] = NoParams
    needs_trusted: ClassVar[bool] = False
    supports_amp: ClassVar[bool] = True

    def __init__(self, params: StrictModel, make_net: Callable[[], SegNet], num_classes: int, spatial_dims: int):
        super().__init__()
        self.params = params
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims

    def training_step(self, batch: dict[str, torch.Tensor], info: StepInfo) -> StepOutput:
        """Loss and logs for one batch: image (N, C, *S) float, label (N, *S) long; optionally
        clean_label (N, *S) (benchmarks, for logging only) and meta_image / meta_label
        (a trusted batch, for methods with `needs_trusted`)."""
        raise NotImplementedError

    def after_step(self, info: StepInfo) -> None:
        """Called after the optimiser step (EMA teachers update here)."""

    def write_figures(self, run_dir: Path, cases: list[Case], device: torch.device) -> None:
        """Called once at the end of training (main process) with a few validation cases
        (falls back to training cases); methods draw their own diagnostic maps here."""

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K, *S) float32 for inference (softmax of `self.net`)."""
        return torch.softmax(self.net(x).float(), dim=1)


def host_logs(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar tensors → floats with one device-to-host copy (one sync per step, not one per term)."""
    if not terms:
        return {}
    return dict(zip(terms, torch.stack([t.float() for t in terms.values()]).cpu().tolist()))
