"""The `benchmark:` section of a config file: what `noisyseg benchmark` runs.

A benchmark config is a training config (data / net / optim / train sections, shared by
every method) plus a `benchmark:` mapping validated by :class:`BenchmarkSpec`. See
``configs/la_morph.yaml`` for a documented example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from ..config import (
    RunConfig,
    StrictModel,
    deep_update,
    load_config,
    load_yaml_mapping,
    validation_message,
)
from ..errors import ConfigError
from ..report.demo_report import CLEAN_TITLE

DEMO_PREFIX = "demo:"
CLEAN_CEILING = "supervised_clean"
"""Result key of `supervised` trained on the clean labels (the ceiling of every table)."""


def run_title(method: str) -> str:
    """How a result key is shown in tables and figures."""
    return CLEAN_TITLE if method == CLEAN_CEILING else method


class NoiseSpec(StrictModel):
    """How the noisy training labels are made.

    Args:
        protocol: a protocol of `noisyseg noise`, or 'given' to use the dataset's labels as
            they are (no clean-label ceiling is trained then; test labels are taken as clean).
        levels: one benchmark per level (null for protocols without a level).
        seed: noise seed (the same noisy labels for every method and training seed).
        params: the protocol's own parameters (e.g. morph size_range).
        n_clean: number of (untrusted) training cases that stay clean.
        clean_fraction: share of cases kept clean (protocols other than morph).
        source: sfda's source domain: a dataset folder, or 'scanner_shift' to simulate one
            from the training images (see noisyseg.noise.domain_shift).
        source_params: parameters of the simulated scanner shift.
        source_overrides: config overrides of sfda's source `supervised` run.
    """

    protocol: str = "morph"
    levels: list[float | None] = Field(default_factory=lambda: [None], min_length=1)
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    n_clean: int | None = Field(None, ge=0)
    clean_fraction: float | None = Field(None, ge=0.0, le=1.0)
    source: str | None = None
    source_params: dict[str, Any] = Field(default_factory=dict)
    source_overrides: dict[str, Any] = Field(default_factory=dict)


class SplitSpec(StrictModel):
    """Which cases are tested. The dataset's own labelled `test_split` is used when it has
    one and nothing is given here; otherwise test cases are held out of the training cases.
    Held-out test cases and drawn trusted cases are whole groups (an ACDC patient's slices).

    Args:
        test_split: the dataset split tested when it holds labelled cases: 'test', or 'val'
            (ACDC's validation volumes, when the test volumes are not distributed).
        test_ids: explicit test case ids (taken out of training).
        test_fraction: share of training cases (groups) held out (seeded by `seed`) when the dataset
            has no labelled test cases and no test_ids are given.
        trusted_ids: trusted (clean) training cases for methods that need them.
        n_trusted: number of trusted cases (groups: patients) drawn (seeded) when trusted_ids is empty and
            the dataset lists none.
        seed: seed of the drawn splits.
    """

    test_split: Literal["test", "val"] = "test"
    test_ids: list[str] = Field(default_factory=list)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    trusted_ids: list[str] = Field(default_factory=list)
    n_trusted: int = Field(3, ge=0)
    seed: int = 0


class SlurmSpec(StrictModel):
    """SLURM resources of each job (`--launcher slurm`; the command line wins).

    Args:
        partition: the SLURM partition.
        time_min: wall-clock limit of one job in minutes.
        gpus_per_job: GPUs of one job.
        cpus_per_job: CPU cores of one job (DataLoader workers and torch threads).
        mem_gb: memory of one job.
        max_parallel: jobs of the array running at once (None: no limit).
        additional: further submitit `slurm_*` parameters, e.g. {account: X, qos: Y}.
    """

    partition: str | None = None
    time_min: int = Field(240, ge=1)
    gpus_per_job: int = Field(1, ge=0)
    cpus_per_job: int = Field(8, ge=1)
    mem_gb: int | None = Field(None, ge=1)
    max_parallel: int | None = Field(None, ge=1)
    additional: dict[str, Any] = Field(default_factory=dict)


class BenchmarkSpec(StrictModel):
    """A benchmark: data, noise, methods, seeds, and the published numbers to compare.

    Args:
        name: title of the summary.
        data: dataset folder (any layout), or 'demo:mni' / 'demo:phantom3d' for the
            embedded data; `--data` overrides it.
        noise: see NoiseSpec.
        split: see SplitSpec.
        methods: methods trained on the noisy labels.
        clean_ceiling: also train `supervised` on the clean labels.
        method_params: per-method parameters, {method: {param: value}}.
        seeds: training seeds (each method runs once per seed).
        convention: HD95/ASD convention of the metrics ('medpy' matches the LA / Pancreas
            papers' numbers; 'monai' is symmetric).
        reported: published numbers, {level key: {method: {metric: value}}}; the level key
            is 'all' or a level such as '0.4'. Dice and IoU in %, HD95 and ASD in mm.
        reported_source: where `reported` comes from (shown under the table).
        overlay_slices: test cases shown in the overlay grid.
        checkpoint: the weights each run is tested with: 'best' (selected on the validation
            cases, whose labels are as noisy as the training labels) or 'last' (the end of
            training). Changing it re-evaluates finished runs without training them again.
        slurm: resources of each job under `--launcher slurm` (see SlurmSpec).
    """

    name: str = "benchmark"
    data: str | None = None
    noise: NoiseSpec = Field(default_factory=NoiseSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    methods: list[str] = Field(default_factory=lambda: ["supervised", "clcs", "metadcseg"], min_length=1)
    clean_ceiling: bool = True
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    convention: Literal["monai", "medpy"] = "monai"
    reported: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    reported_source: str = ""
    overlay_slices: int = Field(3, ge=0)
    checkpoint: Literal["best", "last"] = "best"
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_to_list(cls, v: Any) -> Any:
        return list(range(v)) if isinstance(v, int) else v


def level_key(level: float | None) -> str:
    """Folder and table key of a noise level: 'all' for None, else e.g. '0.4'."""
    return "all" if level is None else f"{level:g}"


def load_benchmark(path: Path | str, *, data: str | None = None, methods: list[str] | None = None,
                   seeds: int | None = None, overrides: dict | None = None,
                   benchmark_overrides: dict | None = None) -> tuple[BenchmarkSpec, RunConfig]:
    """Read a benchmark config; command-line choices win over the file.

    `overrides` are merged into the training config, `benchmark_overrides` into the
    `benchmark:` mapping (both nested dicts, before validation).

    Returns:
        (spec, base training config). Every method name and its parameters are validated
        here, so a misspelt method fails before anything runs.
    Raises:
        ConfigError: a missing file, bad YAML, an unknown key, an unknown method, no data.
    """
    from ..config import MethodConfig
    from ..methods import validate_method

    raw = load_yaml_mapping(path)
    bench_raw = raw.get("benchmark")
    if not isinstance(bench_raw, dict):
        raise ConfigError(f"{path}: no 'benchmark:' mapping (see configs/la_morph.yaml)")
    bench_raw = deep_update(bench_raw, benchmark_overrides or {})
    try:
        spec = BenchmarkSpec.model_validate(bench_raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, BenchmarkSpec, str(path), prefix="benchmark.")) from exc
    updates: dict[str, Any] = {}
    if data is not None:
        updates["data"] = data
    if methods is not None:
        updates["methods"] = methods
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        updates["seeds"] = list(range(seeds))
    spec = spec.model_copy(update=updates)
    if not spec.data:
        raise ConfigError(f"{path}: benchmark.data is not set: give --data DIR")
    unknown_params = sorted(set(spec.method_params) - set(spec.methods) - {"supervised"})
    if unknown_params:
        validate_method(MethodConfig(name=unknown_params[0]), where=f"{path}: benchmark.method_params")
    for m in spec.methods:
        validate_method(MethodConfig(name=m, params=spec.method_params.get(m, {})), where=f"{path}: method '{m}'")
    if spec.noise.protocol != "given":
        from ..noise import get_protocol
        from ..noise.registry import MODEL_PROTOCOLS

        if spec.noise.protocol not in MODEL_PROTOCOLS:
            get_protocol(spec.noise.protocol)  # ConfigError with a suggestion for a misspelt name
    cfg = load_config(path, overrides)
    return spec, cfg
