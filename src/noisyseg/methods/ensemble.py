"""`ensemble`: several networks trained side by side with CE + Dice, their softmax averaged."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..config import StrictModel
from .base import Method, StepInfo, StepOutput, host_logs, mean_softmax
from .losses import ce_dice_loss
from .registry import register


class EnsembleParams(StrictModel):
    """Parameters of `ensemble`.

    Args:
        networks: how many networks (each its own initialisation, all on the same batches).
    """

    networks: int = Field(2, ge=2)


@register
class Ensemble(Method):
    """`networks` copies of `supervised` (CE + soft Dice on the given labels), differently
    initialised and trained on the same batches; inference averages their softmax (N, K, *S).

    The compute-matched baseline of the two-network methods (`clcs`, `coteaching`): what
    averaging two networks gains without any noise handling."""

    name = "ensemble"
    Params = EnsembleParams
    relative_cost = 2.0

    def __init__(self, params: EnsembleParams, make_net, num_classes, spatial_dims):
        super().__init__(params, make_net, num_classes, spatial_dims)
        self.nets = nn.ModuleList(make_net() for _ in range(params.networks))  # the RNG advances: distinct inits

    def training_step(self, batch, info: StepInfo) -> StepOutput:
        losses = [ce_dice_loss(net(batch["image"]), batch["label"], batch.get("valid")) for net in self.nets]
        return StepOutput(sum(losses), host_logs({f"loss/net{i + 1}": v.detach() for i, v in enumerate(losses)}))

    def predict_proba(self, x):
        """Mean of the networks' softmax (N, K, *S), float32."""
        return mean_softmax(self.nets, x)
