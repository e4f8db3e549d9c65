"""The one training loop every method runs on.

It owns devices, AMP (CUDA only), the optimiser and poly schedule, deterministic batches,
logging (CSV + TensorBoard), validation on held-out training cases for model selection
(never the test set), atomic checkpoints, exact resume, and gradient averaging under
torchrun. Methods only turn a batch into a loss (see methods/base.py).

A run is a sequence of named phases: :func:`~noisyseg.engine.prepare.prepare_run`, then for
every step :func:`train_step`, :func:`log_step`, :func:`validate` and :func:`checkpoint` when
due, and :func:`finish`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data.case import Dataset
from ..data.loader import default_num_workers, step_batches, to_device
from ..methods import Method, StepInfo, StepOutput
from ..runinfo import package_versions
from . import distributed as dist_utils
from .checkpoint import rng_state, save_checkpoint
from .logger import TextLog
from .optim import make_optimizer, set_poly_lr
from .prepare import RunState, prepare_run
from .setup import DEFAULT_PATCH, build_method, resolve_device, split_train_val
from .stopping import StopFlag
from .validation import validation_scores

__all__ = ["DEFAULT_PATCH", "TrainResult", "build_method", "checkpoint", "finish", "log_step", "make_optimizer",
           "resolve_device", "run_steps", "set_poly_lr", "split_train_val", "train", "train_step", "validate"]

T = TypeVar("T")


@dataclass
class TrainResult:
    run_dir: Path
    steps_done: int
    best_score: float
    best_step: int
    interrupted: bool = False
    is_main: bool = True  # rank 0 under torchrun (the process that reports)

    def message(self) -> str:
        """The one-line outcome the console and ``train.log`` show."""
        state = "interrupted (resume with --resume)" if self.interrupted else "done"
        return (f"{state}: {self.steps_done} steps, best validation Dice {self.best_score:.4f} "
                f"at step {self.best_step}; run in {self.run_dir}")


def train(cfg: RunConfig, dataset: Dataset, run_dir: Path | str, *, resume: bool = False,
          trusted_ids: list[str] | None = None, progress: bool = True,
          stop_at_step: int | None = None, method: Method | None = None) -> TrainResult:
    """Train `cfg.method` (or the given `method` instance) on `dataset` into `run_dir`.

    `stop_at_step` checkpoints and stops once that step is done, exactly as an interrupted
    run would (for time-sliced schedulers; `resume=True` continues it). `method` replaces
    the method the registry would build from `cfg.method`; on resume its state is restored.

    Everything that can fail on bad input (config, data, method parameters) is checked
    before the run folder is created, so a failed start leaves nothing behind. The run's
    messages, validation scores and every warning go to ``train.log`` in `run_dir`.
    """
    with TextLog() as text:
        try:
            run = prepare_run(cfg, dataset, Path(run_dir), resume=resume, trusted_ids=trusted_ids,
                              progress=progress, text=text, method=method)
            res = finish(run, run_steps(run, stop_at_step))
        except Exception as exc:
            if text.path is not None:
                text.write(f"error: {type(exc).__name__}: {exc}")
            raise
        if text.path is not None:
            text.write(res.message())
    return res


class _Clock:
    """Wall time since the loop started, and the part of it spent waiting for batches."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.data_wait = 0.0

    def wait(self, fetch: Callable[[], T]) -> T:
        t = time.perf_counter()
        value = fetch()
        self.data_wait += time.perf_counter() - t
        return value

    def per_step(self, steps: int) -> dict[str, float]:
        n = max(steps, 1)
        return {"time/step_s": (time.perf_counter() - self.t0) / n, "time/data_wait_s": self.data_wait / n}


def _due(step: int, every: int, max_steps: int) -> bool:
    return step % every == 0 or step == max_steps


def run_steps(run: RunState, stop_at_step: int | None = None) -> bool:
    """Steps `run.step`..max_steps-1, each followed by logging, validation and a checkpoint when
    due; returns whether the run stopped early (a signal, or `stop_at_step`), checkpointed."""
    cfg, max_steps = run.cfg, run.cfg.train.max_steps
    num_workers = cfg.data.num_workers if cfg.data.num_workers is not None else default_num_workers(run.device.type)
    bar = tqdm(total=max_steps, initial=run.start, desc=f"train {run.name}", disable=not run.show,
               dynamic_ncols=True)
    run.method.train()
    clock = _Clock()
    interrupted = False
    with StopFlag() as stop:
        batches = step_batches(run.sampler, run.meta_sampler, rank=run.dinfo.rank, start=run.start,
                               max_steps=max_steps, num_workers=num_workers, pin_memory=run.device.type == "cuda")
        while run.step < max_steps:
            out, lr = train_step(run, batches, clock)
            bar.update(1)
            log_step(run, out, lr, clock, bar)
            if _due(run.step, cfg.train.val_every, max_steps):
                validate(run)
            if stop_at_step is not None and stop_at_step <= run.step < max_steps:
                stop.requested = True
            # a signal may reach one process only: all stop after the step any of them was asked to
            stopping = dist_utils.any_rank(stop.requested, run.dinfo, run.device) and run.step < max_steps
            if stopping or _due(run.step, cfg.train.ckpt_every, max_steps):
                checkpoint(run)
            if stopping:
                interrupted = True
                break
        del batches  # shuts the workers down
    bar.close()
    return interrupted


def train_step(run: RunState, batches: Iterator[dict[str, torch.Tensor]], clock: _Clock) -> tuple[StepOutput, float]:
    """One optimiser step on the next batch; advances `run.step`. Returns the method's output
    and the learning rate of the step."""
    cfg = run.cfg
    sinfo = StepInfo(run.step, cfg.train.max_steps)
    lr = set_poly_lr(run.optimizer, cfg, run.step)
    batch = clock.wait(lambda: to_device(next(batches), run.device))
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.use_amp):
        out = run.step_fn(batch, sinfo)
    if not torch.isfinite(out.loss):
        raise RuntimeError(f"loss became {out.loss.item()} at step {run.step}; lower optim.lr or check the data")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(out.loss).backward()
    if run.dinfo.enabled and not run.use_ddp:
        dist_utils.average_gradients(run.method, run.dinfo.world_size)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.method.after_step(sinfo)
    run.step += 1
    return out, lr


def log_step(run: RunState, out: StepOutput, lr: float, clock: _Clock, bar: tqdm) -> None:
    """Loss, learning rate, the method's logs and timings, every `train.log_every` steps (rank 0)."""
    if run.logger is None or not _due(run.step, run.cfg.train.log_every, run.cfg.train.max_steps):
        return
    run.logger.log(run.step, {"loss": out.loss.item(), "lr": lr, **out.logs, **clock.per_step(run.step - run.start)})
    bar.set_postfix(loss=f"{out.loss.item():.3f}")


def validate(run: RunState) -> None:
    """Validation Dice logged (rank 0, when there are validation cases); a new best is saved."""
    if not (run.dinfo.is_main and run.val_cases):
        return
    cfg = run.cfg
    scores = validation_scores(run.method, run.val_cases, run.dataset.num_classes, run.device,
                               patch_size=run.patch, overlap=cfg.train.sw_overlap, mode=cfg.train.sw_mode,
                               slice_axis=cfg.data.slice_axis, stride=cfg.train.sw_stride)
    run.logger.log(run.step, scores)
    run.text.write(f"step {run.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if scores["val/dice"] > run.best_score:
        run.best_score, run.best_step = scores["val/dice"], run.step
        save_best(run)


def checkpoint(run: RunState) -> None:
    """``checkpoints/last.pt`` with everything an exact resume needs (rank 0); logs flushed."""
    if run.dinfo.is_main:
        save_checkpoint(run.run_dir / "checkpoints" / "last.pt", {
            "method": run.method.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(), "step": run.step, "best_score": run.best_score,
            "best_step": run.best_step, "rng": rng_state(), "config": run.cfg.model_dump(mode="json"),
            "versions": package_versions(), "data_info": run.info,
        })
    dist_utils.barrier(run.dinfo)
    if run.logger is not None:
        run.logger.flush()


def save_best(run: RunState) -> None:
    """``checkpoints/best.pt``: the weights selected on validation (no optimiser: for prediction)."""
    save_checkpoint(run.run_dir / "checkpoints" / "best.pt", {
        "method": run.method.state_dict(), "step": run.step, "config": run.cfg.model_dump(mode="json"),
        "data_info": run.info, "versions": package_versions()})


def finish(run: RunState, interrupted: bool) -> TrainResult:
    """Check the ranks agree, keep the last weights as best when nothing was validated, close
    the logs and, for a complete run, write the figures."""
    if run.dinfo.enabled:
        dist_utils.check_in_sync(run.method)
    if not run.val_cases and run.dinfo.is_main:
        save_best(run)
        run.best_step = run.step
    run.best_score, run.best_step = dist_utils.from_main((run.best_score, run.best_step), run.dinfo)  # rank 0's
    if run.logger is not None:
        run.logger.close()
        if not interrupted:
            write_figures(run)
    return TrainResult(run.run_dir, run.step, run.best_score, run.best_step, interrupted, run.dinfo.is_main)


def write_figures(run: RunState) -> None:
    """In ``figures/``: ``training_curves.png`` (every log group), ``<name>_curves.png`` (the
    method's `figure_groups`, when it declares any) and the method's own `write_figures`, given
    a few validation cases (else training cases)."""
    from ..data.store import in_memory
    from ..report.figures import plot_training_curves

    figures_dir, log_csv = run.run_dir / "figures", run.run_dir / "train_log.csv"
    plot_training_curves(log_csv, figures_dir / "training_curves.png")
    if run.method.figure_groups:
        plot_training_curves(log_csv, figures_dir / f"{run.name}_curves.png", groups=list(run.method.figure_groups))
    run.method.eval()
    cases = run.val_cases[:4] or [in_memory(c) for c in run.train_cases[:4]]
    run.method.write_figures(figures_dir, cases, run.device)  # positional: a hook may name it otherwise
