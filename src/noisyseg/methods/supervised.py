"""`supervised`: CE + Dice on the given labels, the baseline every method is compared to."""

from __future__ import annotations

from .base import Method, StepInfo, StepOutput
from .losses import ce_dice_loss
from .registry import register


@register
class Supervised(Method):
    """One network trained with cross-entropy plus soft Dice on the given (possibly noisy) labels."""

    name = "supervised"

    def __init__(self, params, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.net = make_net()

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        loss = ce_dice_loss(self.net(batch["image"]), batch["label"], batch.get("valid"))
        return StepOutput(loss, {})
