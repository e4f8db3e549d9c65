"""Validated run configuration (pydantic), loaded from YAML, saved beside every run.

Unknown keys are rejected with a "did you mean" suggestion; each method validates its
own `method.params` with the `Params` model it declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, did_you_mean


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")


class DataConfig(StrictModel):
    """How training batches are drawn.

    Args:
        spatial_dims: 2 trains on 2D images or on slices of volumes; 3 on 3D patches;
            None follows the dataset.
        patch_size: training patch (and sliding-window roi) per spatial axis.
        batch_size: patches per step (per process under torchrun).
        fg_oversample: share of patches centred on a foreground voxel.
        val_fraction: share of training cases held out for model selection.
        slice_axis: axis of a volume along which 2D slices are taken.
        augment: random flips, rot90 and intensity jitter.
        target_spacing: resample every case to this voxel size in mm (images linear,
            labels nearest) before training and prediction; predictions are interpolated
            back to the input grid. None keeps the data's own grid.
        slice_size: 2D runs only: resize every 2D image or slice of a volume in plane to
            this size (images linear, labels nearest) for training, and predict each slice
            at this size, the probabilities resized back to the input's own grid. None
            keeps each slice's size (patches are cropped or padded).
        num_workers: DataLoader worker processes drawing batches ahead of the training
            process (0: drawn in it); None chooses by the machine (see data/loader.py).
            Batches do not depend on it.
        in_memory: hold the training cases as arrays in the process's memory instead of
            memory-mapped files (labels in their smallest integer type) in a temporary
            folder of `cache_dir`; batches are the same either way.
        cache_dir: where the memory-mapped cases are written (None: TMPDIR or /tmp).
    """

    spatial_dims: Literal[2, 3] | None = None
    patch_size: list[int] | None = None
    batch_size: int = Field(4, ge=1)
    fg_oversample: float = Field(0.33, ge=0.0, le=1.0)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    slice_axis: int = -1
    augment: bool = True
    target_spacing: list[float] | None = None
    slice_size: list[int] | None = None
    num_workers: int | None = Field(None, ge=0)
    in_memory: bool = False
    cache_dir: str | None = None


class NetConfig(StrictModel):
    """Backbone choice. `features` is the width of the last decoder feature map that
    methods such as CLCS and MetaDCSeg read; a 1x1 conv turns it into class logits.
    `norm`: batch norm (the papers' networks) or instance norm with affine parameters
    (steadier with the batch of 1-2 patches that fits a CPU; unet and unetpp only).
    `memory_format`: the order of the convolution weights in memory; 'auto' is channels-last
    on CPU (faster there, benchmarks/bench_memory_format.py) and contiguous elsewhere."""

    arch: Literal["unet", "unetpp", "vnet"] = "unet"
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64, 128])
    features: int = Field(16, ge=2)
    num_res_units: int = Field(1, ge=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm: Literal["batch", "instance"] = "batch"
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"


class OptimConfig(StrictModel):
    """Optimiser and poly learning-rate schedule lr_t = lr * (1 - t / max_steps) ** poly_power."""

    name: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    poly_power: float = Field(0.9, ge=0)


class TrainConfig(StrictModel):
    """The loop's own settings.

    Sliding-window prediction (validation, predict, benchmark): windows of the patch size
    overlap by `sw_overlap` and are blended by `sw_mode`; `sw_stride` (one step in voxels per
    axis, e.g. [18, 18, 4] as in the LA / Pancreas papers) replaces the overlap by a fixed
    stride, windows placed like the papers' test code (the last one flush with the border).
    """

    max_steps: int = Field(1000, ge=1)
    val_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    ckpt_every: int = Field(100, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    sw_overlap: float = Field(0.5, ge=0.0, lt=1.0)
    sw_mode: Literal["gaussian", "constant"] = "gaussian"
    sw_stride: list[int] | None = None
    val_max_cases: int = Field(8, ge=1)
    keep_cpu_memory: bool = True


class MethodConfig(StrictModel):
    """The training method and its own parameters (validated by the method)."""

    name: str = "supervised"
    params: dict[str, Any] = Field(default_factory=dict)


class RunConfig(StrictModel):
    """Everything a training run needs besides the data folder."""

    data: DataConfig = Field(default_factory=DataConfig)
    net: NetConfig = Field(default_factory=NetConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)

    @model_validator(mode="after")
    def _patch_matches_dims(self) -> "RunConfig":
        ps = self.data.patch_size
        if ps is not None and self.data.spatial_dims is not None and len(ps) != self.data.spatial_dims:
            raise ValueError(f"patch_size {ps} has {len(ps)} axes but spatial_dims is {self.data.spatial_dims}")
        ts = self.data.target_spacing
        if ts is not None and any(v <= 0 for v in ts):
            raise ValueError(f"data.target_spacing {ts} must be positive")
        ss = self.data.slice_size
        if ss is not None and (len(ss) != 2 or any(v < 1 for v in ss)):
            raise ValueError(f"data.slice_size {ss} must be 2 positive sizes (height, width of a 2D slice)")
        if ss is not None and self.data.spatial_dims == 3:
            raise ValueError("data.slice_size is for 2D runs (data.spatial_dims: 2)")
        stride = self.train.sw_stride
        if stride is not None:
            if any(v < 1 for v in stride):
                raise ValueError(f"train.sw_stride {stride} must be positive")
            if ps is not None and len(stride) != len(ps):
                raise ValueError(f"train.sw_stride {stride} has {len(stride)} axes but patch_size has {len(ps)}")
        return self


def _fields_of(model: type[BaseModel], loc: tuple) -> list[str]:
    """Names valid at a location of the config tree, for suggestions."""
    cur: Any = model
    for part in loc[:-1]:
        fld = getattr(cur, "model_fields", {}).get(part)
        if fld is None:
            return []
        cur = fld.annotation
    return list(getattr(cur, "model_fields", {}).keys())


def validation_message(exc: ValidationError, model: type[BaseModel], where: str, prefix: str = "") -> str:
    """Turn a pydantic error into one line: 'config.yaml: data.batch_size: ...'
    (`prefix` names where `model` sits in the config tree, e.g. 'method.params.')."""
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    dotted = prefix + ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        hint = did_you_mean(loc[-1], _fields_of(model, loc))
        return f"{where}: unknown option '{dotted}'{hint}"
    return f"{where}: {dotted}: {err['msg']}"


def deep_update(base: dict, over: dict) -> dict:
    """Recursively merge `over` into a copy of `base`."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml_mapping(path: Path | str) -> dict:
    """A YAML file holding a mapping; ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def parse_key_values(items: list[str], option: str) -> dict[str, Any]:
    """['a=1', 'b=[3,7]'] → {'a': 1, 'b': [3, 7]} (values parsed as YAML); ConfigError otherwise."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option}: expected KEY=VALUE, got '{item}'")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{option}: cannot parse the value of '{key}'") from exc
    return out


EXTRA_SECTIONS = ("benchmark",)
"""Top-level config sections besides RunConfig's, read by other commands."""


def load_config(path: Path | str | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a YAML config (optional), apply overrides, validate; ConfigError on any problem.

    Besides the run sections, a config may hold a `benchmark:` section (read by `noisyseg
    benchmark`, ignored here); any other top-level key is refused with a suggestion.
    """
    raw: dict = {}
    where = "config"
    if path is not None:
        where = str(path)
        raw = load_yaml_mapping(path)
        allowed = [*RunConfig.model_fields, *EXTRA_SECTIONS]
        for key in raw:
            if key not in allowed:
                raise ConfigError(f"{path}: unknown section '{key}'{did_you_mean(str(key), allowed)}; "
                                  f"sections are {', '.join(allowed)}")
        raw = {k: v for k, v in raw.items() if k in RunConfig.model_fields}
    raw = deep_update(raw, overrides or {})
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, RunConfig, where)) from exc


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write the config as YAML (atomically)."""
    from .io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
