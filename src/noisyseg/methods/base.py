"""The seam between the shared training loop and a training method.

A method is an `nn.Module` that owns its networks and its state (EMA thresholds,
feature centers, a teacher network) as submodules and buffers, so one `state_dict()`
saves and restores everything. It turns a batch into a loss and scalar logs; the loop
does the rest (devices, AMP, optimiser, schedule, logging, validation, checkpoints,
distributed gradient averaging).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


@dataclass
class LabelWeights:
    """Per-pixel label weights of a batch: `given` (α, of the given label), `pseudo` (β, of the
    pseudo label) and `pseudo_label` (ŷ), each (N, *S)."""

    given: torch.Tensor
    pseudo: torch.Tensor
    pseudo_label: torch.Tensor


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
    # False when training_step takes parameter gradients itself (torch.autograd.grad):
    # torchrun then averages gradients after backward instead of through DDP
    ddp_compatible: ClassVar[bool] = True
    # log-key prefixes (before '/') the loop draws into figures/<name>_curves.png
    figure_groups: ClassVar[tuple[str, ...]] = ()
    # training time relative to `supervised` at the same budget (measured, docs/architecture.md);
    # a benchmark with several workers starts the costliest runs first
    relative_cost: ClassVar[float] = 1.0

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

    def write_figures(self, figures_dir: Path, cases: list[Case], device: torch.device) -> None:
        """Called once at the end of a complete run (main process, eval mode) with the run's
        figures folder and a few validation cases (else training cases), for the figures only
        the method can draw; the loop draws its `figure_groups` curves itself."""

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, K, *S) float32 for inference (softmax of `self.net`)."""
        return torch.softmax(self.net(x).float(), dim=1)

    # ------------------------------------------------------------ optional capabilities
    # Code outside the loop (the audit) asks a method for these instead of testing its name.

    def label_thresholds(self) -> torch.Tensor | None:
        """Per-class thresholds (K,) on p(given label) below which the method rejects a pixel's
        label, or None when it has none (the default). A method with a ``thresholds()``
        method (CLCS's curriculum thresholds) provides them through it."""
        thresholds = getattr(self, "thresholds", None)
        return thresholds() if callable(thresholds) else None

    def label_weights(self, image: torch.Tensor, label: torch.Tensor, meta_image: torch.Tensor,
                      meta_label: torch.Tensor, *, valid: torch.Tensor | None = None,
                      meta_valid: torch.Tensor | None = None) -> LabelWeights | None:
        """Per-pixel weights of the given and the pseudo label of a batch (N, C, *S) / (N, *S),
        learnt against a trusted meta batch, or None when the method learns none (the default)."""
        return None

    @classmethod
    def has_label_weights(cls) -> bool:
        """Whether the method overrides :meth:`label_weights`."""
        return cls.label_weights is not Method.label_weights


def host_values(names: Sequence[str], values: Sequence[torch.Tensor]) -> dict[str, float]:
    """{name: float} from tensors of any shape, flattened in order and concatenated (as many
    names as elements), with one device-to-host copy (one sync per step, not one per term)."""
    if not values:
        return {}
    flat = torch.cat([v.float().reshape(-1) for v in values]).cpu().tolist()
    return dict(zip(names, flat))


def host_logs(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar tensors → floats with one device-to-host copy (see `host_values`)."""
    return host_values(list(terms), list(terms.values()))


SELECTION_FIGURE_GROUPS = ("selection", "selection_precision", "selection_recall", "selection_kept")


def unit_channels(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x / max(‖x‖, eps) along the channels of (N, F, *S), the value of `F.normalize(x, dim=1)`.

    Written with a channel sum of squares: the library's strided norm kernel is about 30x
    slower on CPU for (4, 16, 128, 128) (5.7 ms vs 0.2 ms on 2 threads).
    """
    return x * (x * x).sum(1, keepdim=True).clamp_min(eps * eps).rsqrt()


def mean_softmax(nets: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Mean of the networks' softmax (N, K, *S) float32: the inference of multi-network methods."""
    return sum(torch.softmax(net(x).float(), 1) for net in nets) / len(nets)


def selection_log_values(selections: Sequence[torch.Tensor], label: torch.Tensor,
                         clean_label: torch.Tensor, num_classes: int | None = None) -> tuple[list[str], torch.Tensor]:
    """Quality of clean-pixel selections against the clean labels, pooled over the selections.

    Args:
        selections: (N, *S) bool masks (one per network's training set).
        label: (N, *S) given labels.
        clean_label: (N, *S) true labels.
        num_classes: also log the quality per given class.

    Returns:
        names ``selection/precision`` (share of selected pixels whose label is correct),
        ``selection/recall`` (share of correctly labelled pixels that were selected),
        ``selection/base_rate`` (share of correct labels), and with `num_classes`
        ``selection_precision/c{k}``, ``selection_recall/c{k}`` and ``selection_kept/c{k}``
        (share of the pixels labelled k that were selected); a float32 tensor of their values
        (0/0 gives NaN: undefined).
    """
    correct = (label == clean_label).float()
    sel = torch.stack([s.float() for s in selections])
    both = (sel * correct).sum()
    values = [torch.stack([both / sel.sum(), both / (correct.sum() * len(selections)), correct.mean()])]
    names = ["selection/precision", "selection/recall", "selection/base_rate"]
    if num_classes is not None:
        lab = label.expand_as(sel)
        sel_k = class_counts(lab, num_classes, sel)
        both_k = class_counts(lab, num_classes, sel * correct)
        correct_k = class_counts(lab, num_classes, correct.expand_as(sel))
        all_k = class_counts(lab, num_classes).float()
        values.append(torch.cat([both_k / sel_k, both_k / correct_k, sel_k / all_k]))
        names += [f"selection_{q}/c{k}" for q in ("precision", "recall", "kept") for k in range(num_classes)]
    return names, torch.cat(values)


def selection_host_values(names: Sequence[str], values: Sequence[torch.Tensor], selections: Sequence[torch.Tensor],
                          batch: dict, num_classes: int) -> dict[str, float]:
    """`host_values(names, values)`, plus `selection_log_values` of `selections` (per class)
    when the batch holds ``clean_label`` (benchmarks); one device-to-host copy."""
    if "clean_label" in batch:
        sel_names, sel_values = selection_log_values(selections, batch["label"], batch["clean_label"], num_classes)
        names, values = [*names, *sel_names], [*values, sel_values]
    return host_values(names, values)


def class_counts(label: torch.Tensor, num_classes: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(K,) number (or summed `weight`) of the pixels of each class, without a host sync
    (`torch.bincount` and boolean-mask indexing synchronise with the device on CUDA).

    Args:
        label: (*S) long class indices in [0, num_classes).
        weight: optional (*S) per-pixel weight; int64 counts when None.
    """
    flat = label.reshape(-1)
    w = torch.ones_like(flat) if weight is None else weight.reshape(-1)
    return torch.zeros(num_classes, dtype=w.dtype, device=flat.device).index_add_(0, flat, w)
