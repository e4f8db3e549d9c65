"""The training loop driven with a stub method instance (no registry)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch import nn

from noisyseg import api
from noisyseg.engine.checkpoint import load_checkpoint
from noisyseg.engine.trainer import train
from noisyseg.methods import Method, StepInfo, StepOutput
from noisyseg.methods.base import NoParams


class StubMethod(Method):
    """A 1x1 convolution; records every step, every returned loss and every figure call."""

    name = "stub"
    figure_groups = ("stub",)

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__(NoParams(), lambda: None, num_classes, 2)
        self.net = nn.Conv2d(in_channels, num_classes, 1)
        self.register_buffer("after_steps", torch.zeros((), dtype=torch.long))
        self.steps: list[int] = []
        self.losses: dict[int, float] = {}
        self.figure_calls: list[tuple[Path, int]] = []

    def training_step(self, batch: dict[str, torch.Tensor], info: StepInfo) -> StepOutput:
        self.steps.append(info.step)
        loss = 0.5 * (self.net.weight ** 2).sum() + 0.1 * info.step
        self.losses[info.step] = loss.item()
        return StepOutput(loss, {"stub/step": float(info.step)})

    def after_step(self, info: StepInfo) -> None:
        self.after_steps += 1

    def write_figures(self, figures_dir: Path, cases, device: torch.device) -> None:
        self.figure_calls.append((Path(figures_dir), len(cases)))


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "train_log.csv").open() as fh:
        return list(csv.DictReader(fh))


def _setup(mni_small, tiny):
    cfg = api.make_config(None, overrides=tiny(max_steps=6, val_every=2, log_every=1, ckpt_every=100))
    ds = api.open_data(mni_small)

    def make() -> StubMethod:
        torch.manual_seed(0)
        return StubMethod(ds.in_channels, ds.num_classes)

    return cfg, ds, make


def test_the_loop_runs_a_stub_method_instance_step_by_step(mni_small, tmp_path, tiny):
    cfg, ds, make = _setup(mni_small, tiny)
    stub = make()
    res = train(cfg, ds, tmp_path / "r", progress=False, method=stub)
    assert stub.steps == list(range(6)) and int(stub.after_steps) == 6
    assert res.steps_done == 6 and not res.interrupted and res.best_step in (2, 4, 6)
    rows = _rows(tmp_path / "r")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["loss"]) for r in rows] == [stub.losses[s] for s in range(6)]  # the step's loss, as returned
    assert [int(r["step"]) for r in rows if r["val/dice"]] == [2, 4, 6]  # validated every val_every steps
    assert "train stub on" in (tmp_path / "r" / "train.log").read_text()
    figures = tmp_path / "r" / "figures"
    assert stub.figure_calls == [(figures, 2)]  # the figures folder and the validation cases
    assert (figures / "stub_curves.png").stat().st_size > 0  # the declared figure_groups


def test_a_stub_run_stopped_early_resumes_to_the_uninterrupted_result(mni_small, tmp_path, tiny):
    cfg, ds, make = _setup(mni_small, tiny)
    whole = make()
    train(cfg, ds, tmp_path / "a", progress=False, method=whole)

    first = make()
    res = train(cfg, ds, tmp_path / "b", progress=False, method=first, stop_at_step=4)
    assert res.interrupted and first.steps == [0, 1, 2, 3] and first.figure_calls == []
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 4
    second = make()
    res = train(cfg, ds, tmp_path / "b", progress=False, method=second, resume=True)
    assert second.steps == [4, 5] and int(second.after_steps) == 6  # the buffer came back from the checkpoint
    assert res.steps_done == 6 and not res.interrupted
    for k, v in whole.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k
    untimed = [[{k: v for k, v in r.items() if not k.startswith("time/")} for r in _rows(tmp_path / run)]
               for run in ("a", "b")]
    assert untimed[0] == untimed[1]  # every step's row, the checkpointed step's included
