"""The first phase of a run: every check on bad input, then cases, method, optimiser, the
resumed state and the run folder (so a failed start leaves nothing behind)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import RunConfig, save_config
from ..data.case import Case, Dataset
from ..data.sampling import PatchSampler
from ..errors import ConfigError, DataError
from ..io import atomic_path
from ..methods import Method, StepInfo, StepOutput, validate_method
from ..runinfo import package_versions
from . import distributed as dist_utils
from .checkpoint import load_checkpoint, set_rng_state
from .cpu_memory import keep_freed_memory
from .logger import RunLogger, TextLog
from .optim import make_optimizer
from .setup import (build_method, data_info, load_cases, place_method, resolve_device, resolve_patch,
                    resume_comparable, split_train_val, training_dims)


@dataclass
class Split:
    """Case ids of the run: training, validation (held-out training cases) and trusted."""

    train: list[str]
    val: list[str]
    trusted: list[str]


@dataclass
class RunState:
    """What the phases of one run share; `step`, `best_score` and `best_step` advance."""

    cfg: RunConfig
    dataset: Dataset
    run_dir: Path
    text: TextLog
    device: torch.device
    dinfo: dist_utils.DistInfo
    show: bool
    patch: list[int]
    info: dict
    method: Method
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: PatchSampler
    meta_sampler: PatchSampler | None
    train_cases: list[Case]
    val_cases: list[Case]
    use_amp: bool
    step_fn: Callable[[dict[str, torch.Tensor], StepInfo], StepOutput] | None = None
    use_ddp: bool = False
    logger: RunLogger | None = None
    start: int = 0
    step: int = 0
    best_score: float = -math.inf
    best_step: int = -1

    @property
    def name(self) -> str:
        """The method's name (the config's for a method without one)."""
        return self.method.name or self.cfg.method.name


def prepare_run(cfg: RunConfig, dataset: Dataset, run_dir: Path, *, resume: bool, trusted_ids: list[str] | None,
                progress: bool, text: TextLog, method: Method | None = None) -> RunState:
    """Check, load and build everything a run needs, restore a resumed run, open its folder.

    `method` replaces the configured method (built from the registry, seeded, when None).
    """
    device, dinfo = _devices(cfg)
    show = progress and dinfo.is_main
    dims = training_dims(cfg, dataset)
    patch = resolve_patch(cfg, dims)
    method_cls = type(method) if method is not None else validate_method(cfg.method)[0]
    state = _resume_state(cfg, run_dir) if resume else _check_empty(run_dir)
    split = split_cases(cfg, dataset, trusted_ids, method_cls)
    refs = {r.id: r for r in dataset.train}
    train_cases = load_cases([refs[i] for i in split.train], "loading training cases", show, cfg,
                             mapped=not cfg.data.in_memory)
    val_cases = load_cases([refs[i] for i in split.val[: cfg.train.val_max_cases]], "loading validation cases",
                           show, cfg)
    if method is None:
        method = build_method(cfg, dataset.in_channels, dataset.num_classes, dims)
    run = _assemble(cfg, dataset, run_dir, text, device, dinfo, show, patch, data_info(dataset, dims, patch, cfg),
                    place_method(method, device, cfg, dims), train_cases, val_cases, split.trusted)
    if state is not None:
        _restore(run, state)
    _distribute(run)
    _open_run_folder(run, split, resume, dims)
    return run


def _devices(cfg: RunConfig) -> tuple[torch.device, dist_utils.DistInfo]:
    device = resolve_device(cfg.train.device)
    dinfo = dist_utils.init_distributed(device.type)
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cpu" and cfg.train.keep_cpu_memory:
        keep_freed_memory()
    return device, dinfo


def _resume_state(cfg: RunConfig, run_dir: Path) -> dict:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    if resume_comparable(state["config"]) != resume_comparable(cfg.model_dump(mode="json")):
        raise ConfigError(f"{run_dir}: --resume with a config that differs from the run's "
                          "(only train.max_steps and train.device may change)")
    return state


def _check_empty(run_dir: Path) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: run folder exists and is not empty (use --resume or another --out)")


def split_cases(cfg: RunConfig, dataset: Dataset, trusted_ids: list[str] | None, method_cls: type[Method]) -> Split:
    """The run's seeded train/validation split; trusted cases checked and kept in training."""
    trusted = list(trusted_ids if trusted_ids is not None else dataset.trusted_ids)
    if method_cls.needs_trusted and not trusted:
        raise ConfigError(f"method '{method_cls.name or cfg.method.name}' needs trusted cases: give "
                          "--clean-cases FILE or a 'clean_cases' list in dataset.json")
    all_ids = [r.id for r in dataset.train]
    if not all_ids:
        raise DataError(f"{dataset.root}: no training cases")
    unknown = sorted(set(trusted) - set(all_ids))
    if unknown:
        raise DataError(f"{dataset.root}: trusted case '{unknown[0]}' is not a training case")
    train_ids, val_ids = split_train_val(all_ids, cfg.data.val_fraction, cfg.train.seed, set(trusted),
                                         dataset.groups)
    return Split(train_ids, val_ids, trusted)


def _assemble(cfg: RunConfig, dataset: Dataset, run_dir: Path, text: TextLog, device: torch.device,
              dinfo: dist_utils.DistInfo, show: bool, patch: list[int], info: dict, method: Method,
              train_cases: list[Case], val_cases: list[Case], trusted: list[str]) -> RunState:
    """The run's samplers, optimiser and gradient scaler around a built method."""
    by_id = {c.id: c for c in train_cases}
    trusted_cases = [by_id[i] for i in trusted if i in by_id]
    sampler_kw = dict(patch_size=patch, batch_size=cfg.data.batch_size, fg_oversample=cfg.data.fg_oversample,
                      augment=cfg.data.augment, slice_axis=cfg.data.slice_axis)
    sampler = PatchSampler(train_cases, seed=cfg.train.seed, **sampler_kw)
    meta_sampler = (PatchSampler(trusted_cases, seed=cfg.train.seed + 1, use_clean_label=True, **sampler_kw)
                    if method.needs_trusted else None)
    optimizer = make_optimizer(cfg, method)
    use_amp = cfg.train.amp and device.type == "cuda" and method.supports_amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return RunState(cfg, dataset, run_dir, text, device, dinfo, show, patch, info, method, optimizer, scaler,
                    sampler, meta_sampler, train_cases, val_cases, use_amp)


def _restore(run: RunState, state: dict) -> None:
    """Weights, optimiser, scaler, progress and RNG of a resumed run."""
    run.method.load_state_dict(state["method"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    run.start = run.step = int(state["step"])
    run.best_score, run.best_step = float(state["best_score"]), int(state["best_step"])
    set_rng_state(state["rng"])


def _distribute(run: RunState) -> None:
    """The training step under torchrun: through DDP, or with gradients averaged after backward."""
    run.use_ddp = run.dinfo.enabled and run.method.ddp_compatible
    run.step_fn = dist_utils.ddp_training_step(run.method, run.device) if run.use_ddp else run.method.training_step
    if run.dinfo.enabled and not run.use_ddp:
        dist_utils.broadcast_parameters(run.method)


def _open_run_folder(run: RunState, split: Split, resume: bool, dims: int) -> None:
    """config.yaml, run_info.json and train.log (rank 0), then the metrics logger."""
    cfg, dinfo = run.cfg, run.dinfo
    dist_utils.barrier(dinfo)  # every process has checked the run folder before it is made
    if dinfo.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run.run_dir / "config.yaml")
        run_info = {"seed": cfg.train.seed, "versions": package_versions(), "data": run.info,
                    "split": {"train": split.train, "val": split.val, "trusted": split.trusted},
                    "world_size": dinfo.world_size, "device": str(run.device), "amp": run.use_amp}
        with atomic_path(run.run_dir / "run_info.json") as tmp:
            tmp.write_text(json.dumps(run_info, indent=2))
        run.text.open(run.run_dir / "train.log")
        ds = run.dataset
        run.text.write(f"{'resume' if resume else 'train'} {run.name} on {ds.root} ({ds.layout}, {dims}D patches "
                       f"{run.patch}): {len(split.train)} training, {len(split.val)} validation, "
                       f"{len(split.trusted)} trusted cases; device {run.device}; steps "
                       f"{run.start}..{cfg.train.max_steps}; seed {cfg.train.seed}")
    dist_utils.barrier(dinfo)
    if dinfo.is_main:
        run.logger = RunLogger(run.run_dir / "train_log.csv", run.run_dir / "tb", resume_step=run.start)
