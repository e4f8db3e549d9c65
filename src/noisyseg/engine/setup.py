"""What a run needs settled before it starts: device, dimensionality, patch, split, cases, method."""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data.case import Case, CaseRef, Dataset
from ..errors import ConfigError
from ..methods import Method, validate_method
from ..nets import downsample_factor, net_factory

DEFAULT_PATCH = {2: [128, 128], 3: [64, 64, 64]}


def resolve_device(name: str) -> torch.device:
    """The torch device of `train.device` (``auto``: CUDA when available, else CPU)."""
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


def place_method(method: Method, device: torch.device, cfg: RunConfig, dims: int) -> Method:
    """The method on `device`, its convolution weights (4D in 2D, 5D in 3D) in the order of
    `net.memory_format` ('auto': channels-last on CPU, contiguous elsewhere). Activations
    follow the weights' order, so inputs need no conversion."""
    fmt = cfg.net.memory_format
    if fmt == "auto":
        fmt = "channels_last" if device.type == "cpu" else "contiguous"
    if fmt == "channels_last":
        method = method.to(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    return method.to(device)


def load_cases(refs: Iterable[CaseRef], desc: str, show: bool, cfg: RunConfig, *, mapped: bool = False) -> list[Case]:
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


def resume_comparable(cfg_dict: dict) -> dict:
    """A run config without the settings a resumed run may change (max_steps, device, and the
    data settings batches do not depend on)."""
    d = json.loads(json.dumps(cfg_dict))
    d["train"].pop("max_steps", None)
    d["train"].pop("device", None)
    for k in ("num_workers", "in_memory", "cache_dir"):
        d["data"].pop(k, None)
    return d
