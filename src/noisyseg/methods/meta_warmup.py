"""Stage 0 of the meta-weighted methods (`metadcseg`, `l2b`): train on the given labels until the
network finds every class, then let the look-ahead weigh the pixels.

Meta weights of an untrained network put all weight on the majority class (its foreground
pixels' gradients oppose a meta gradient dominated by background), so the meta stage starts
only once the running mean of `class_agreement` reaches a threshold. Measurements:
docs/methods/metadcseg.md.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from .base import StepOutput, host_logs
from .losses import ce_dice_loss

AGREEMENT_MOMENTUM = 0.9


def class_agreement(pseudo_label: torch.Tensor, label: torch.Tensor, num_classes: int,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """How well the prediction already finds the given foreground classes: the smallest, over the
    foreground classes present in `label`, of Dice(pseudo_label == k, label == k) over the batch.

    Args:
        pseudo_label, label: (N, *S) long.
        num_classes: K.
        valid: optional (N, *S) bool, the annotated pixels (the others are not counted).
    Returns:
        0-dim float tensor in [0, 1], NaN when no foreground class is present (no host sync).
    """
    v = torch.ones_like(label, dtype=torch.float32) if valid is None else valid.float()
    scores = []
    for k in range(1, num_classes):
        given, predicted = (label == k).float() * v, (pseudo_label == k).float() * v
        n = given.sum()
        dice = 2 * (given * predicted).sum() / (n + predicted.sum()).clamp_min(1.0)
        scores.append(torch.where(n > 0, dice, torch.full_like(dice, math.inf)))
    low = torch.stack(scores).min()
    return torch.where(torch.isinf(low), torch.full_like(low, math.nan), low)


class MetaWarmup(nn.Module):
    """The switch from stage 0 (given labels) to the meta stage, kept in the state dict.

    Args:
        start: the running agreement (momentum `AGREEMENT_MOMENTUM`) at which the meta stage
            starts; 0 starts it at once. Once on, it stays on (also after a resume).
    Buffers: ``agreement`` (0-dim float), ``meta_on`` (0-dim bool).
    """

    def __init__(self, start: float):
        super().__init__()
        self.start = float(start)
        self.register_buffer("agreement", torch.zeros(()))
        self.register_buffer("meta_on", torch.tensor(self.start == 0))

    @property
    def active(self) -> bool:
        """Whether the method is still in stage 0 (one host read)."""
        return not bool(self.meta_on)

    @torch.no_grad()
    def update(self, pseudo_label: torch.Tensor, label: torch.Tensor, num_classes: int,
               valid: torch.Tensor | None = None) -> None:
        """Fold one batch's `class_agreement` (averaged over ranks under torchrun) into the
        running mean and switch on past `start`."""
        agree = class_agreement(pseudo_label, label, num_classes, valid)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # every rank must switch at the same step (the meta stage has collectives)
            pair = torch.stack([torch.nan_to_num(agree, nan=0.0), (~torch.isnan(agree)).to(agree.dtype)])
            dist.all_reduce(pair)
            agree = torch.where(pair[1] > 0, pair[0] / pair[1].clamp_min(1.0), torch.full_like(pair[0], math.nan))
        m = AGREEMENT_MOMENTUM
        self.agreement.copy_(torch.where(torch.isnan(agree), self.agreement, m * self.agreement + (1 - m) * agree))
        self.meta_on.copy_(self.meta_on | (self.agreement >= self.start))

    def step(self, net: nn.Module, batch: dict[str, torch.Tensor], num_classes: int, *,
             dice_weight: float) -> StepOutput:
        """A stage-0 step: mean CE + `dice_weight`·soft Dice against the given labels over the
        annotated pixels. Logs ``loss/warmup``, ``meta/agreement`` and ``meta/stage`` (0)."""
        label, valid = batch["label"], batch.get("valid")
        logits = net(batch["image"])
        loss = ce_dice_loss(logits, label, valid, dice_weight=dice_weight)
        self.update(logits.detach().max(1).indices, label, num_classes, valid)
        logs = host_logs({"loss/warmup": loss.detach(), "meta/agreement": self.agreement})
        logs["meta/stage"] = 0.0
        return StepOutput(loss, logs)
