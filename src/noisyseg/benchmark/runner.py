"""`noisyseg benchmark`: noise → train every method × seed → predict → evaluate → tables.

Layout of the output folder (everything a later run needs to resume)::

    OUT/benchmark.yaml            the resolved benchmark and training config
    OUT/data/clean/               the dataset with the benchmark's split (when one was made)
    OUT/data/noisy_<level>/       noisy training labels (noisyseg noise), one per level
    OUT/trusted.txt               trusted training cases (methods that need a clean set)
    OUT/runs/<level>/<method>/seed<k>/   a training run, its test predictions and result.json
    OUT/results.csv, summary.md, summary.json, figures/

A run whose `result.json` exists is skipped (only tested again when `benchmark.checkpoint`
changed since); a run with a checkpoint but no result is
resumed (`--resume` semantics, bit-identical on CPU); anything else in a run folder is
an interrupted start and is cleared. Noisy datasets are reused once complete (they are
written atomically). The results folder is the single source of truth for every launcher
(launch.py): each run is trained under an flock on `OUT/runs/<level>/<method>/seed<k>.lock`
and the preparation and summary under `OUT/.benchmark.lock`, so two launches on one folder
never train a run twice; a local launch (one worker or a pool) takes up the runs another launch
holds last.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm.auto import tqdm

from ..config import MethodConfig, RunConfig
from ..data.case import Case, Dataset, resolve_trusted_ids
from ..errors import ConfigError, DataError
from ..io import atomic_dir, atomic_path, label_file_name, write_label
from .launch import BenchmarkInterrupted, LockBusy, file_lock, local_gpus, run_pool, run_submitit
from .runkey import RunKey
from .spec import CLEAN_CEILING, DEMO_PREFIX, BenchmarkSpec, level_key, load_benchmark

__all__ = ["BenchmarkInterrupted", "BenchmarkResult", "RunKey", "run_benchmark"]


@dataclass
class BenchmarkResult:
    out: Path
    table: str
    rows: list[dict]
    seconds: float


# --------------------------------------------------------------------------- data


def _demo_data(spec: BenchmarkSpec, out: Path) -> Path:
    """The embedded demo dataset named by benchmark.data ('demo:mni'), written once into OUT."""
    from ..demo import write_demo_data

    task = spec.data[len(DEMO_PREFIX):]
    if task not in ("mni", "phantom3d"):
        raise ConfigError(f"benchmark.data: unknown embedded dataset '{spec.data}'; choose demo:mni or demo:phantom3d")
    folder = out / "data" / f"demo_{task}"
    if not (folder / "dataset.json").is_file():
        write_demo_data(task, folder, seed=0, overwrite=True)
    return folder


def _pick(ids: list[str], n: int, seed: int, salt: int, groups: dict[str, str] | None = None) -> list[str]:
    """The ids of n groups (each id its own group without `groups`) drawn without replacement,
    in their original order (seeded)."""
    if n <= 0:
        return []
    group = (groups or {}).get
    units = list(dict.fromkeys(group(i, i) for i in ids))
    rng = np.random.default_rng([seed, salt])
    chosen = {units[k] for k in rng.choice(len(units), size=min(n, len(units)), replace=False).tolist()}
    return [i for i in ids if group(i, i) in chosen]


def test_refs(spec: BenchmarkSpec, ds: Dataset) -> list:
    """The dataset's own cases of the benchmark's test split ('test' or 'val'); the test cases
    when that split is empty (a copy written by the benchmark holds its test cases as test)."""
    return ds.split(spec.split.test_split) or ds.test


def prepare_data(spec: BenchmarkSpec, ds: Dataset, out: Path, progress: bool) -> tuple[Path, Dataset, list[str]]:
    """(clean dataset folder, opened dataset, trusted ids) with the benchmark's split.

    The dataset `ds` is used in place when it has labelled test cases and the split names
    no test ids; otherwise test cases are held out and the split is written once as a
    Decathlon copy in OUT/data/clean.
    """
    from ..data import open_dataset
    from ..data.convert import write_as_decathlon

    source = ds.root
    train_ids = [r.id for r in ds.train]
    sp = spec.split
    own_test = test_refs(spec, ds)
    unknown = sorted(set(sp.test_ids) - set(train_ids) - {r.id for r in own_test})
    if unknown:
        raise DataError(f"{source}: benchmark.split.test_ids names '{unknown[0]}', which is not a case of the dataset")
    need_split = bool(sp.test_ids) or not own_test
    if need_split:
        n_groups = len({ds.group_of(i) for i in train_ids})
        test_ids = list(sp.test_ids) or _pick(train_ids, max(1, round(sp.test_fraction * n_groups)), sp.seed, 11,
                                              ds.groups)
        remaining = [i for i in train_ids if i not in set(test_ids)]
    else:
        remaining = train_ids
    trusted = resolve_trusted_ids(sp.trusted_ids, remaining, "benchmark.split.trusted_ids", ds.groups) \
        or [i for i in ds.trusted_ids if i in remaining] or _pick(remaining, sp.n_trusted, sp.seed, 12, ds.groups)
    bad = sorted(set(trusted) - set(remaining))
    if bad:
        raise DataError(f"{source}: trusted case '{bad[0]}' is not a training case of the benchmark split")
    if not need_split:
        return source, ds, trusted
    folder = out / "data" / "clean"
    if not (folder / "dataset.json").is_file():
        by_id = {r.id: r for r in ds.train + own_test}
        cases = [by_id[i].load() for i in tqdm(remaining, desc="split: training cases", disable=not progress,
                                                 leave=False)]
        for c in cases:
            if c.label is None:
                raise DataError(f"{c.image_path}: training case '{c.id}' has no label")
        with atomic_dir(folder, overwrite=True) as tmp:
            write_as_decathlon(ds, tmp, cases, [c.label for c in cases],
                               clean=[c.clean_label for c in cases] if ds.has_clean_labels else None,
                               test=[by_id[i] for i in test_ids], trusted_ids=trusted, progress=progress)
    return folder, open_dataset(folder), trusted


def make_noisy(spec: BenchmarkSpec, clean_dir: Path, level: float | None, trusted_file: Path, out: Path,
               progress: bool) -> Path:
    """The noisy copy of `clean_dir` for one level (reused when already complete)."""
    from ..modelnoise import make_noisy_dataset
    from ..noise.registry import MODEL_PROTOCOLS

    if spec.noise.protocol == "given":
        return clean_dir
    folder = out / "data" / f"noisy_{level_key(level)}"
    if (folder / "noise_summary.json").is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    n = spec.noise
    kw: dict = {}
    if n.protocol in MODEL_PROTOCOLS:
        source = n.source
        if source == "scanner_shift":
            from ..noise.domain_shift import write_shifted_source

            source = str(write_shifted_source(clean_dir, out / "data" / "source_scanner_shift",
                                              seed=n.seed, params=n.source_params, progress=progress))
        kw = {"source": source, "source_overrides": n.source_overrides or None}
    make_noisy_dataset(clean_dir, folder, protocol=n.protocol, level=level, seed=n.seed, params=n.params,
                       n_clean=n.n_clean, clean_fraction=n.clean_fraction, clean_cases_file=trusted_file,
                       progress=progress, figures=True, **kw)
    return folder


# --------------------------------------------------------------------------- runs


def _run_config(cfg: RunConfig, spec: BenchmarkSpec, method: str, seed: int, max_steps: int | None) -> dict:
    raw = cfg.model_dump(mode="json")
    raw["method"] = {"name": method, "params": spec.method_params.get(method, {})}
    raw["train"]["seed"] = seed
    if max_steps is not None:
        raw["train"]["max_steps"] = max_steps
    return raw


def evaluate_run(run_dir: Path, test_cases: list[Case], ds: Dataset, convention: str,
                 checkpoint: str = "best") -> list[dict]:
    """Predict every test case with a trained run's `checkpoint` ('best' or 'last'), write the
    predictions to `run_dir/pred_test/`, and return one row per case and class/region."""
    from .. import api
    from ..metrics import case_metrics
    from ..metrics.case_metrics import METRICS

    method, info, rcfg = api.load_run(run_dir, checkpoint)
    rows = []
    names = {str(i): n for i, n in enumerate(ds.class_names)}
    with atomic_dir(run_dir / "pred_test", overwrite=True) as tmp:
        for case in test_cases:
            pred = api.predict_image(method, case.image, info, rcfg, case.spacing).argmax(0)
            write_label(tmp / label_file_name(case.id, case.image_path), api.to_label_values(pred, info["label_values"]),
                        affine=case.affine, spacing=case.spacing)
            m = case_metrics(pred, case.label, num_classes=ds.num_classes, spacing=case.spacing,
                             convention=convention, regions=ds.regions)
            targets = dict.fromkeys(k.split("_", 1)[1] for k in m)
            for t in targets:
                rows.append({"case": case.id, "target": names.get(t, t),
                             **{metric: m[f"{metric}_{t}"] for metric in METRICS}})
    return rows


def resolved_method_params(method: str, params: dict) -> dict:
    """Every parameter of `method` as `params` and today's defaults make it (JSON types)."""
    from ..methods import validate_method

    return validate_method(MethodConfig(name=method, params=params))[1].model_dump(mode="json")


def _check_resolved(run_dir: Path, method: str, record: dict, resolved: dict) -> None:
    """Refuse a finished run whose method was trained with other parameters than today's defaults
    give for the same config (a default changed since); older records lack them."""
    trained = record.get("method_resolved_params")
    if trained is None or trained == resolved:
        return
    changed = ", ".join(f"{k}: {trained.get(k)!r} then, {resolved.get(k)!r} now"
                        for k in sorted(set(trained) | set(resolved)) if trained.get(k) != resolved.get(k))
    raise ConfigError(f"{run_dir}: {method} was trained with other defaults ({changed}); remove that run folder "
                      "to retrain it, or choose another --out")


def tested_checkpoint(record: dict) -> str:
    """The checkpoint a result record was tested with (records older than the choice: 'best')."""
    return record.get("checkpoint", "best")


def needs_evaluation(run_dir: Path, spec: BenchmarkSpec) -> bool:
    """Whether a run has no result yet or was tested with another checkpoint than `spec`'s."""
    done = run_dir / "result.json"
    return not done.is_file() or tested_checkpoint(json.loads(done.read_text())) != spec.checkpoint


def run_one(key: RunKey, data_dir: Path, cfg: RunConfig, spec: BenchmarkSpec, out: Path, trusted_file: Path,
            test_cases: list[Case], ds: Dataset, max_steps: int | None, progress: bool) -> dict:
    """Train (or resume, or skip) one run and evaluate it; returns its result record."""
    from .. import api

    run_dir = key.folder(out)
    done = run_dir / "result.json"
    method = "supervised" if key.method == CLEAN_CEILING else key.method
    params = spec.method_params.get(method, {})
    if done.is_file():
        record = json.loads(done.read_text())
        if "method_params" in record and record["method_params"] != params:  # (older records lack it)
            raise ConfigError(f"{run_dir}: trained with method parameters {record.get('method_params')}, the config "
                              f"now says {params}; remove that run folder to retrain it, or choose another --out")
        _check_resolved(run_dir, method, record, resolved_method_params(method, params))
        if tested_checkpoint(record) == spec.checkpoint:
            return {**record, "reused": True}  # finished by an earlier invocation (not written back)
        record = {**record, "checkpoint": spec.checkpoint,  # tested with the other checkpoint: test again
                  "rows": evaluate_run(run_dir, test_cases, ds, spec.convention, spec.checkpoint)}
        with atomic_path(done) as tmp:
            tmp.write_text(json.dumps(record, indent=2))
        return {**record, "reused": True}
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # an interrupted start: nothing worth keeping
    t0 = time.perf_counter()
    res = api.train(data=data_dir, out=run_dir, overrides=_run_config(cfg, spec, method, key.seed, max_steps),
                    clean_cases=trusted_file, resume=resume, progress=progress)
    if res.interrupted:
        raise BenchmarkInterrupted(f"{run_dir}: interrupted at step {res.steps_done}; "
                                   "run the same command again to resume")
    train_s = time.perf_counter() - t0
    rows = evaluate_run(run_dir, test_cases, ds, spec.convention, spec.checkpoint)
    record = {"level": key.level, "method": key.method, "seed": key.seed, "method_params": params,
              "method_resolved_params": resolved_method_params(method, params),
              "train_seconds": train_s, "resumed": resume, "checkpoint": spec.checkpoint, "rows": rows}
    with atomic_path(done) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return record


def plan_runs(spec: BenchmarkSpec) -> list[RunKey]:
    """Every (level, method, seed) of the benchmark, the clean ceiling first."""
    keys = []
    if spec.clean_ceiling and spec.noise.protocol != "given":
        keys += [RunKey("clean", CLEAN_CEILING, s) for s in spec.seeds]
    for level in spec.noise.levels:
        keys += [RunKey(level_key(level), m, s) for m in spec.methods for s in spec.seeds]
    return keys


def longest_first(keys: list[RunKey]) -> list[int]:
    """Indices of `keys` by decreasing expected training time (the methods' `relative_cost`;
    ties keep their order), so that a pool of workers does not end on one long run."""
    from ..methods.registry import get_method_class

    def cost(key: RunKey) -> float:
        return get_method_class("supervised" if key.method == CLEAN_CEILING else key.method).relative_cost

    return sorted(range(len(keys)), key=lambda i: -cost(keys[i]))


@dataclass
class Job:
    """One run of the benchmark and everything a fresh process needs to do it."""

    out: Path
    key: RunKey
    data_dir: Path
    clean_dir: Path
    trusted_file: Path
    spec: BenchmarkSpec
    cfg: RunConfig
    max_steps: int | None
    progress: bool = False
    threads: int | None = None  # torch threads of the run (None: this process's setting)


def run_job(job: Job, test_cases: list[Case] | None = None, wait: bool = True) -> dict:
    """One run under the lock of its folder (`<run>.lock` beside it): skipped when finished,
    resumed from its checkpoint, or trained; then evaluated. Returns its result record.
    With `wait=False` a run that another launch holds raises `LockBusy` instead of waiting."""
    import torch

    from ..data import open_dataset

    run_dir = job.key.folder(job.out)
    before = torch.get_num_threads()
    try:
        if job.threads:
            torch.set_num_threads(job.threads)
        with file_lock(run_dir.parent / f"{run_dir.name}.lock", wait):
            ds = open_dataset(job.clean_dir)
            if test_cases is None and needs_evaluation(run_dir, job.spec):
                test_cases = [r.load() for r in test_refs(job.spec, ds)]
            return run_one(job.key, job.data_dir, job.cfg, job.spec, job.out, job.trusted_file, test_cases or [],
                           ds, job.max_steps, job.progress)
    finally:
        torch.set_num_threads(before)


def run_sequential(jobs: list[Job], test_cases: list[Case], progress: bool) -> list[dict]:
    """The jobs one after another in this process. A run that another launch on the same folder
    is training is taken up after the others (its lock then waited for), so that a second
    launch shares the work instead of waiting behind the first (the pool path does the same,
    `run_pool(busy_fn=...)`). Records in the jobs' order."""
    records: dict[int, dict] = {}
    busy: list[int] = []
    for i, job in enumerate(tqdm(jobs, desc="benchmark runs", disable=not progress)):
        job.progress = progress
        try:
            records[i] = run_job(job, test_cases, wait=False)
        except LockBusy:
            busy.append(i)
    for i in busy:
        records[i] = run_job(jobs[i], test_cases)
    return [records[i] for i in range(len(jobs))]


# --------------------------------------------------------------------------- entry point


def _check_same_benchmark(out: Path, resolved: dict) -> None:
    """A resumed benchmark must have the same data, noise, split and training config;
    methods, seeds, the clean ceiling, the reported numbers and the tested checkpoint may change."""
    path = out / "benchmark.yaml"
    if not path.is_file():
        return
    old = yaml.safe_load(path.read_text()) or {}

    def core(d: dict) -> dict:
        b = dict(d.get("benchmark", {}))
        for k in ("methods", "seeds", "reported", "reported_source", "name", "overlay_slices", "method_params",
                  "slurm", "clean_ceiling", "checkpoint"):
            b.pop(k, None)
        train = {k: v for k, v in d.get("train", {}).items() if k != "device"}  # where it runs changes nothing
        data = {k: v for k, v in d.get("data", {}).items()  # nor how batches are fed
                if k not in ("num_workers", "in_memory", "cache_dir")}
        return {**d, "benchmark": b, "train": train, "data": data}

    if core(old) != core(resolved):
        raise ConfigError(f"{out}: holds a different benchmark (data, noise, split or training config changed); "
                          "choose another --out")


def run_benchmark(config: Path | str, out: Path | str, *, data: str | None = None, methods: list[str] | None = None,
                  seeds: int | None = None, max_steps: int | None = None, overrides: dict | None = None,
                  benchmark_overrides: dict | None = None, progress: bool = True, workers: int | None = None,
                  launcher: str = "local", slurm: dict | None = None, threads: int | None = None) -> BenchmarkResult:
    """Run (or resume) a benchmark config into `out`; returns the summary table.

    Args:
        config: YAML file with a `benchmark:` section and the shared training config.
        out: output folder (created; an existing one of the same benchmark is resumed).
        data, methods, seeds: override the config's benchmark.data / methods / seeds.
        max_steps: override train.max_steps of every run (smoke tests).
        overrides: nested config overrides applied to the training config.
        benchmark_overrides: nested overrides of the `benchmark:` mapping (e.g. a smaller
            sfda source run in tests).
        workers: local jobs at once (`launcher='local'`); None: one per GPU, else 1. With
            1 the runs train in this process, one after another.
        launcher: 'local', 'slurm' (submitit; resources from benchmark.slurm and `slurm`)
            or 'submitit_local' (submitit's local executor).
        slurm: overrides of benchmark.slurm (partition, time_min, gpus_per_job, ...).
        threads: torch threads of each run (None: cores / workers locally, this process's
            setting with one worker, benchmark.slurm.cpus_per_job on SLURM). On a CPU the
            thread count changes float rounding, so runs are bit-identical across launches
            with the same `threads`.
    """
    from ..data.loader import available_cores
    from .summary import write_summary

    t0 = time.perf_counter()
    if launcher not in ("local", "slurm", "submitit_local"):
        raise ConfigError(f"--launcher: unknown launcher '{launcher}'; choose local or slurm")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    spec, cfg = load_benchmark(config, data=data, methods=methods, seeds=seeds, overrides=overrides,
                               benchmark_overrides={**(benchmark_overrides or {}),
                                                    **({"slurm": slurm} if slurm else {})})
    if launcher == "slurm" and not spec.slurm.partition:
        raise ConfigError("--launcher slurm: give --partition or benchmark.slurm.partition")
    out = Path(out)
    if spec.data and not spec.data.startswith(DEMO_PREFIX):
        spec = spec.model_copy(update={"data": str(Path(spec.data).expanduser().resolve())})
    resolved = {"benchmark": spec.model_dump(mode="json"), **cfg.model_dump(mode="json"),
                "max_steps_override": max_steps}
    _check_same_benchmark(out, resolved)
    from ..data import open_dataset

    demo = spec.data.startswith(DEMO_PREFIX)
    source_ds = None if demo else open_dataset(Path(spec.data))  # a bad folder fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".benchmark.lock"):  # another launch may be preparing the same folder
        _check_same_benchmark(out, resolved)
        if demo:
            source_ds = open_dataset(_demo_data(spec, out))
        with atomic_path(out / "benchmark.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
        clean_dir, ds, trusted = prepare_data(spec, source_ds, out, progress)
        trusted_file = out / "trusted.txt"
        with atomic_path(trusted_file) as tmp:
            tmp.write_text("".join(f"{i}\n" for i in trusted))
        test_cases = [r.load() for r in test_refs(spec, ds)]
        if not test_cases or any(c.label is None for c in test_cases):
            raise DataError(f"{clean_dir}: the benchmark needs labelled test cases")
        noisy_dirs = {level_key(lv): make_noisy(spec, clean_dir, lv, trusted_file, out, progress)
                      for lv in spec.noise.levels}
    jobs = [Job(out, key, clean_dir if key.level == "clean" else noisy_dirs[key.level], clean_dir, trusted_file,
                spec, cfg, max_steps, progress=False, threads=threads) for key in plan_runs(spec)]
    names = [str(j.key.folder(out)) for j in jobs]
    if launcher == "local":
        gpus = local_gpus(cfg.train.device)
        n = workers or max(1, gpus)
        if n == 1:
            records = run_sequential(jobs, test_cases, progress)
        else:
            for job in jobs:
                job.threads = job.threads or max(1, available_cores() // n)
            records = run_pool(functools.partial(run_job, wait=False), jobs, names, n, gpus, progress,
                               order=longest_first([j.key for j in jobs]), busy_fn=run_job)
    else:
        cluster = "slurm" if launcher == "slurm" else "local"
        cores = spec.slurm.cpus_per_job if cluster == "slurm" else min(spec.slurm.cpus_per_job, available_cores())
        for job in jobs:
            job.threads = job.threads or cores
        records = run_submitit(run_job, jobs, names, cluster=cluster, slurm=spec.slurm, folder=out / "submitit",
                               job_name=f"noisyseg-{out.name}", progress=progress)
    with file_lock(out / ".benchmark.lock"):
        table, rows = write_summary(out, spec, records, ds, clean_dir, noisy_dirs, test_cases,
                                    seconds=time.perf_counter() - t0)
    return BenchmarkResult(out, table, rows, time.perf_counter() - t0)
