"""The one training loop every method runs on.

It owns devices, AMP (CUDA only), the optimiser and poly schedule, deterministic
batches, logging (CSV + TensorBoard), validation on held-out training cases for model
selection (never the test set), atomic checkpoints, exact resume, and gradient
averaging under torchrun. Methods only turn a batch into a loss (see methods/base.py).
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import RunConfig, save_config
from ..data.case import Case, Dataset
from ..data.loader import default_num_workers, step_batches, to_device
from ..data.sampling import PatchSampler
from ..errors import ConfigError, DataError
from ..io import atomic_path
from ..methods import Method, StepInfo, validate_method
from ..nets import downsample_factor, net_factory
from . import distributed as dist_utils
from .cpu_memory import keep_freed_memory
from .checkpoint import load_checkpoint, package_versions, rng_state, save_checkpoint, set_rng_state
from .inference import predict_case
from .logger import RunLogger, TextLog

DEFAULT_PATCH = {2: [128, 128], 3: [64, 64, 64]}


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


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def training_dims(cfg: RunConfig, dataset: Dataset) -> int:
    """The run's training dimensionality: the config's, else the layout's (ACDC: 2), else the data's."""
    dims = cfg.data.spatial_dims or dataset.train_dims or dataset.spatial_dims
    if dims > dataset.spatial_dims:
        raise ConfigError(f"data.spatial_dims: {dims}D training needs {dims}D data, {dataset.root} is 2D")
    if cfg.data.slice_size is not None and dims != 2:
        raise ConfigError(f"data.slice_size: {dims}D training; slice_size is for 2D runs (data.spatial_dims: 2)")
    return dims


def resolve_patch(cfg: RunConfig, dims: int) -> list[int]:
    """The patch size, checked against the network's downsampling."""
    patch = list(cfg.data.patch_size or DEFAULT_PATCH[dims])
    if len(patch) != dims:
        raise ConfigError(f"data.patch_size: {patch} has {len(patch)} axes for {dims}D training")
    f = downsample_factor(cfg.net)
    if any(p % f for p in patch):
        raise ConfigError(f"data.patch_size: {patch} must be divisible by {f} for net {cfg.net.arch} "
                          f"with {len(cfg.net.channels)} levels")
    return patch


def split_train_val(ids: list[str], val_fraction: float, seed: int, keep_in_train: set[str],
                    groups: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Seeded split of training case ids into (train, val) by group (patient): a `val_fraction`
    share of the groups is held out whole, so no group is on both sides; the groups of trusted
    cases stay in train. Without `groups` every case is its own group."""
    group = (groups or {}).get
    units = list(dict.fromkeys(group(i, i) for i in ids))
    kept = {group(i, i) for i in keep_in_train}
    candidates = [u for u in units if u not in kept]
    n_val = int(round(val_fraction * len(units)))
    if val_fraction > 0 and len(candidates) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(len(candidates) - 1, 0))
    order = np.random.default_rng([seed, 104729]).permutation(len(candidates))
    held = {candidates[i] for i in order[:n_val]}
    val = sorted(i for i in ids if group(i, i) in held)
    return [i for i in ids if group(i, i) not in held], val


def data_info(dataset: Dataset, dims: int, patch: list[int], cfg: RunConfig) -> dict:
    """What predict/audit need to know about the training data."""
    return {
        "layout": dataset.layout,
        "root": str(dataset.root),
        "data_dims": dataset.spatial_dims,
        "train_dims": dims,
        "patch_size": patch,
        "slice_axis": cfg.data.slice_axis,
        "class_names": dataset.class_names,
        "label_values": dataset.label_values,
        "modalities": dataset.modalities,
        "regions": dataset.regions,
    }


def build_method(cfg: RunConfig, in_channels: int, num_classes: int, dims: int) -> Method:
    """Seeded construction of the configured method (networks initialised from the torch RNG)."""
    cls, params = validate_method(cfg.method)
    torch.manual_seed(cfg.train.seed)
    return cls(params, net_factory(cfg.net, dims, in_channels, num_classes), num_classes, dims)


def load_cases(refs, desc: str, show: bool, cfg: RunConfig, *, mapped: bool = False) -> list[Case]:
    """Load cases, resampled to `data.target_spacing` and resized to `data.slice_size` when set;
    with `mapped`, each is written to a temporary folder in `data.cache_dir` and memory-mapped
    (data/store.py), one case in memory at a time. The folder is removed at once: the maps stay
    valid while in use."""
    from ..data.resample import resample_case, resize_case
    from ..data.store import CaseStore

    def prepared(case: Case) -> Case:
        return resize_case(resample_case(case, cfg.data.target_spacing), cfg.data.slice_size, cfg.data.slice_axis)

    refs = tqdm(refs, desc=desc, disable=not show, leave=False)
    if not mapped:
        return [prepared(r.load()) for r in refs]
    with CaseStore(cfg.data.cache_dir) as store:
        return [store.put(prepared(r.load())) for r in refs]


def mean_foreground_dice(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    from ..metrics import dice_per_class

    d = np.asarray(dice_per_class(pred, truth, num_classes), dtype=float)[1:]
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop after the current step."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _comparable(cfg_dict: dict) -> dict:
    d = json.loads(json.dumps(cfg_dict))
    d["train"].pop("max_steps", None)
    d["train"].pop("device", None)
    for k in ("num_workers", "in_memory", "cache_dir"):  # batches do not depend on them
        d["data"].pop(k, None)
    return d


def train(cfg: RunConfig, dataset: Dataset, run_dir: Path | str, *, resume: bool = False,
          trusted_ids: list[str] | None = None, progress: bool = True,
          stop_at_step: int | None = None) -> TrainResult:
    """Train `cfg.method` on `dataset` into `run_dir`.

    `stop_at_step` checkpoints and stops once that step is done, exactly as an interrupted
    run would (for time-sliced schedulers; `resume=True` continues it).

    Everything that can fail on bad input (config, data, method parameters) is checked
    before the run folder is created, so a failed start leaves nothing behind. The run's
    messages, validation scores and every warning go to ``train.log`` in `run_dir`.
    """
    with TextLog() as text:
        try:
            res = _train(cfg, dataset, run_dir, resume=resume, trusted_ids=trusted_ids, progress=progress,
                         stop_at_step=stop_at_step, text=text)
        except Exception as exc:
            if text.path is not None:
                text.write(f"error: {type(exc).__name__}: {exc}")
            raise
        if text.path is not None:
            text.write(res.message())
    return res


def _train(cfg: RunConfig, dataset: Dataset, run_dir: Path | str, *, resume: bool, trusted_ids: list[str] | None,
           progress: bool, stop_at_step: int | None, text: TextLog) -> TrainResult:
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    device = resolve_device(cfg.train.device)
    dinfo = dist_utils.init_distributed(device.type)
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
        torch.cuda.set_device(device)
    show = progress and dinfo.is_main
    if device.type == "cpu" and cfg.train.keep_cpu_memory:
        keep_freed_memory()

    dims = training_dims(cfg, dataset)
    patch = resolve_patch(cfg, dims)
    method_cls, _ = validate_method(cfg.method)
    state = None
    if resume:
        state = load_checkpoint(last_path)
        if _comparable(state["config"]) != _comparable(cfg.model_dump(mode="json")):
            raise ConfigError(f"{run_dir}: --resume with a config that differs from the run's "
                              "(only train.max_steps and train.device may change)")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir}: run folder exists and is not empty (use --resume or another --out)")

    trusted = list(trusted_ids if trusted_ids is not None else dataset.trusted_ids)
    if method_cls.needs_trusted and not trusted:
        raise ConfigError(f"method '{cfg.method.name}' needs trusted cases: give --clean-cases FILE "
                          "or a 'clean_cases' list in dataset.json")
    all_ids = [r.id for r in dataset.train]
    if not all_ids:
        raise DataError(f"{dataset.root}: no training cases")
    unknown = sorted(set(trusted) - set(all_ids))
    if unknown:
        raise DataError(f"{dataset.root}: trusted case '{unknown[0]}' is not a training case")
    train_ids, val_ids = split_train_val(all_ids, cfg.data.val_fraction, cfg.train.seed, set(trusted),
                                         dataset.groups)
    refs = {r.id: r for r in dataset.train}
    train_cases = load_cases([refs[i] for i in train_ids], "loading training cases", show, cfg,
                             mapped=not cfg.data.in_memory)
    val_cases = load_cases([refs[i] for i in val_ids[: cfg.train.val_max_cases]], "loading validation cases", show,
                           cfg)
    by_id = {c.id: c for c in train_cases}
    trusted_cases = [by_id[i] for i in trusted if i in by_id]

    method = build_method(cfg, dataset.in_channels, dataset.num_classes, dims).to(device)
    sampler_kw = dict(patch_size=patch, batch_size=cfg.data.batch_size, fg_oversample=cfg.data.fg_oversample,
                      augment=cfg.data.augment, slice_axis=cfg.data.slice_axis)
    sampler = PatchSampler(train_cases, seed=cfg.train.seed, **sampler_kw)
    meta_sampler = (PatchSampler(trusted_cases, seed=cfg.train.seed + 1, use_clean_label=True, **sampler_kw)
                    if method_cls.needs_trusted else None)
    optimizer = make_optimizer(cfg, method)
    use_amp = cfg.train.amp and device.type == "cuda" and method_cls.supports_amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start, best_score, best_step = 0, -math.inf, -1
    if state is not None:
        method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start, best_score, best_step = int(state["step"]), float(state["best_score"]), int(state["best_step"])
        set_rng_state(state["rng"])
    use_ddp = dinfo.enabled and method_cls.ddp_compatible
    step_fn = dist_utils.ddp_training_step(method, device) if use_ddp else method.training_step
    if dinfo.enabled and not use_ddp:
        dist_utils.broadcast_parameters(method)

    info = data_info(dataset, dims, patch, cfg)
    dist_utils.barrier(dinfo)  # every process has checked the run folder before it is made
    if dinfo.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        run_info = {"seed": cfg.train.seed, "versions": package_versions(), "data": info,
                    "split": {"train": train_ids, "val": val_ids, "trusted": trusted},
                    "world_size": dinfo.world_size, "device": str(device), "amp": use_amp}
        with atomic_path(run_dir / "run_info.json") as tmp:
            tmp.write_text(json.dumps(run_info, indent=2))
        text.open(run_dir / "train.log")
        text.write(f"{'resume' if resume else 'train'} {cfg.method.name} on {dataset.root} ({dataset.layout}, "
                   f"{dims}D patches {patch}): {len(train_ids)} training, {len(val_ids)} validation, "
                   f"{len(trusted)} trusted cases; device {device}; steps {start}..{cfg.train.max_steps}; "
                   f"seed {cfg.train.seed}")
    dist_utils.barrier(dinfo)
    logger = RunLogger(run_dir / "train_log.csv", run_dir / "tb", resume_step=start) if dinfo.is_main else None

    def checkpoint(step_next: int, name: str = "last.pt") -> None:
        if dinfo.is_main:
            save_checkpoint(ckpt_dir / name, {
                "method": method.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "step": step_next, "best_score": best_score, "best_step": best_step, "rng": rng_state(),
                "config": cfg.model_dump(mode="json"), "versions": package_versions(), "data_info": info,
            })
        dist_utils.barrier(dinfo)

    def save_best(step_done: int) -> None:
        """The weights selected on validation (no optimiser: for prediction only)."""
        save_checkpoint(ckpt_dir / "best.pt", {"method": method.state_dict(), "step": step_done,
                                               "config": cfg.model_dump(mode="json"), "data_info": info,
                                               "versions": package_versions()})

    def validate() -> dict[str, float]:
        method.eval()
        noisy, clean = [], []
        for c in val_cases:
            probs = predict_case(method.predict_proba, c.image, patch_size=patch, overlap=cfg.train.sw_overlap,
                                 mode=cfg.train.sw_mode, slice_axis=cfg.data.slice_axis, device=device,
                                 stride=cfg.train.sw_stride)
            pred = probs.argmax(0)
            noisy.append(mean_foreground_dice(pred, c.label, dataset.num_classes))
            if c.clean_label is not None:
                clean.append(mean_foreground_dice(pred, c.clean_label, dataset.num_classes))
        method.train()
        out = {"val/dice": float(np.nanmean(noisy)) if noisy else float("nan")}
        if clean:
            out["val/dice_clean"] = float(np.nanmean(clean))
        return out

    num_workers = cfg.data.num_workers if cfg.data.num_workers is not None else default_num_workers(device.type)
    step = start
    interrupted = False
    bar = tqdm(total=cfg.train.max_steps, initial=start, desc=f"train {cfg.method.name}", disable=not show,
               dynamic_ncols=True)
    method.train()
    t0 = time.perf_counter()
    data_wait = 0.0
    with _StopFlag() as stop:
        batches = step_batches(sampler, meta_sampler, rank=dinfo.rank, start=start, max_steps=cfg.train.max_steps,
                               num_workers=num_workers, pin_memory=device.type == "cuda")
        while step < cfg.train.max_steps:
            sinfo = StepInfo(step, cfg.train.max_steps)
            lr = set_poly_lr(optimizer, cfg, step)
            t_wait = time.perf_counter()
            batch = to_device(next(batches), device)
            data_wait += time.perf_counter() - t_wait
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = step_fn(batch, sinfo)
            if not torch.isfinite(out.loss):
                raise RuntimeError(f"loss became {out.loss.item()} at step {step}; lower optim.lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss).backward()
            if dinfo.enabled and not use_ddp:
                dist_utils.average_gradients(method, dinfo.world_size)
            scaler.step(optimizer)
            scaler.update()
            method.after_step(sinfo)
            step += 1
            bar.update(1)

            if logger is not None and (step % cfg.train.log_every == 0 or step == cfg.train.max_steps):
                logger.log(step, {"loss": out.loss.item(), "lr": lr, **out.logs,
                                  "time/step_s": (time.perf_counter() - t0) / max(step - start, 1),
                                  "time/data_wait_s": data_wait / max(step - start, 1)})
                bar.set_postfix(loss=f"{out.loss.item():.3f}")
            if step % cfg.train.val_every == 0 or step == cfg.train.max_steps:
                if dinfo.is_main and val_cases:
                    scores = validate()
                    logger.log(step, scores)
                    text.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
                    if scores["val/dice"] > best_score:
                        best_score, best_step = scores["val/dice"], step
                        save_best(step)
            if stop_at_step is not None and step >= stop_at_step and step < cfg.train.max_steps:
                stop.requested = True
            # a signal may reach one process only: all stop after the step any of them was asked to
            stopping = dist_utils.any_rank(stop.requested, dinfo, device) and step < cfg.train.max_steps
            if stopping or step % cfg.train.ckpt_every == 0 or step == cfg.train.max_steps:
                checkpoint(step)
                if logger is not None:
                    logger.flush()
            if stopping:
                interrupted = True
                break
        del batches  # shuts the workers down
    bar.close()
    if dinfo.enabled:
        dist_utils.check_in_sync(method)
    if not val_cases and dinfo.is_main:
        save_best(step)
        best_step = step
    best_score, best_step = dist_utils.from_main((best_score, best_step), dinfo)  # validation runs on rank 0
    if logger is not None:
        logger.close()
        if not interrupted:
            from ..report.figures import plot_training_curves

            plot_training_curves(run_dir / "train_log.csv", run_dir / "figures" / "training_curves.png")
            method.eval()
            from ..data.store import in_memory

            method.write_figures(run_dir / "figures", val_cases[:4] or [in_memory(c) for c in train_cases[:4]], device)
    return TrainResult(run_dir, step, best_score, best_step, interrupted, dinfo.is_main)


def make_optimizer(cfg: RunConfig, method: Method) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in method.parameters() if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def set_poly_lr(optimizer: torch.optim.Optimizer, cfg: RunConfig, step: int) -> float:
    """lr_t = lr · (1 − t / max_steps) ** poly_power, set on every parameter group."""
    lr = cfg.optim.lr * (1.0 - step / cfg.train.max_steps) ** cfg.optim.poly_power
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr
