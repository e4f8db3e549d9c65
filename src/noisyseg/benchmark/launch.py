"""Where a benchmark's (level, method, seed) jobs run: in this process, in a local pool (one
job per GPU, or N CPU jobs), or on SLURM through submitit.

The results folder is the single source of truth: a job first takes the lock of its run
(`runs/<level>/<method>/seed<k>.lock`, an flock), then skips a run whose `result.json`
exists, resumes one with a checkpoint, or trains it. Two launches on one folder therefore
never train a run twice (the second waits for the first's lock, then reuses its result),
and an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from ..config import RunConfig
from ..data.loader import available_cores
from ..errors import ConfigError
from .spec import BenchmarkSpec, SlurmSpec

Launcher = Literal["local", "slurm", "submitit_local"]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on `path` (created if missing), held for the block; waits while
    another process holds it. (On a shared filesystem the filesystem must support flock.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Job:
    """One run of the benchmark and everything a fresh process needs to do it."""

    out: Path
    key: Any  # runner.RunKey
    data_dir: Path
    clean_dir: Path
    trusted_file: Path
    spec: BenchmarkSpec
    cfg: RunConfig
    max_steps: int | None
    progress: bool = False
    threads: int | None = None  # torch threads of the run (None: this process's setting)


def run_job(job: Job, test_cases: list | None = None) -> dict:
    """Run one job under its run lock; returns its result record."""
    import torch

    from ..data import open_dataset
    from .runner import run_one

    run_dir = job.key.folder(job.out)
    before = torch.get_num_threads()
    if job.threads:
        torch.set_num_threads(job.threads)
    with file_lock(run_dir.parent / f"{run_dir.name}.lock"), _restore_threads(before):
        ds = open_dataset(job.clean_dir)
        if test_cases is None and not (run_dir / "result.json").is_file():
            test_cases = [r.load() for r in ds.test]
        return run_one(job.key, job.data_dir, job.cfg, job.spec, job.out, job.trusted_file, test_cases or [], ds,
                       job.max_steps, job.progress)


@contextlib.contextmanager
def _restore_threads(n: int) -> Iterator[None]:
    import torch

    try:
        yield
    finally:
        torch.set_num_threads(n)


def _pool_init(slots: Any) -> None:
    """A pool process takes a slot: its GPU (CUDA_VISIBLE_DEVICES) or its share of the CPU cores."""
    kind, value = slots.get()
    if kind == "gpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = str(value)
    elif value:
        os.sched_setaffinity(0, value)


def _slots(workers: int, use_gpus: int) -> list[tuple[str, Any]]:
    if use_gpus:
        return [("gpu", i % use_gpus) for i in range(workers)]
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return [("cpu", None)] * workers
    if len(cores) < workers:
        return [("cpu", None)] * workers
    per = len(cores) // workers
    return [("cpu", set(cores[i * per:(i + 1) * per])) for i in range(workers)]


def local_gpus(device: str) -> int:
    """GPUs a local pool spreads jobs over (0 when training on the CPU)."""
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


def run_pool(jobs: list[Job], workers: int, device: str, progress: bool) -> list[dict]:
    """Run jobs in `workers` local processes (one GPU each when there are GPUs, else an equal
    share of the CPU cores each); records in job order. Jobs without `threads` get
    cores / workers torch threads."""
    from .runner import BenchmarkInterrupted

    gpus = local_gpus(device)
    slots = _slots(workers, gpus)
    for job in jobs:
        job.threads = job.threads or max(1, available_cores() // workers)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for s in slots:
        queue.put(s)
    records: dict[int, dict] = {}
    errors: list[str] = []
    interrupted: list[str] = []
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init, initargs=(queue,)) as pool:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        try:
            for fut in tqdm(as_completed(futures), total=len(futures), desc=f"benchmark runs ({workers} at once)",
                            disable=not progress):
                i = futures[fut]
                try:
                    records[i] = fut.result()
                except BenchmarkInterrupted as exc:
                    interrupted.append(str(exc))
                except Exception as exc:  # noqa: BLE001 - reported below, the other jobs go on
                    errors.append(f"{jobs[i].key.folder(jobs[i].out)}: {type(exc).__name__}: {exc}")
        except KeyboardInterrupt:  # the jobs got the signal too: they checkpoint and stop
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise BenchmarkInterrupted(f"{jobs[0].out}: interrupted; run the same command again to resume") from None
    _raise_failures(errors, interrupted)
    return [records[i] for i in range(len(jobs))]


def _raise_failures(errors: list[str], interrupted: list[str]) -> None:
    from .runner import BenchmarkInterrupted

    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RuntimeError(f"{errors[0]}{more}; finished runs are kept, run the same command again to retry")
    if interrupted:
        raise BenchmarkInterrupted(interrupted[0])


def run_submitit(jobs: list[Job], launcher: Launcher, slurm: SlurmSpec, out: Path, progress: bool) -> list[dict]:
    """Run jobs as one submitit job array: on SLURM (`slurm`) or on this machine
    (`submitit_local`, submitit's local executor, for tests). Logs in OUT/submitit/."""
    try:
        import submitit
    except ImportError as exc:
        raise ConfigError("--launcher slurm needs submitit: pip install submitit") from exc
    from .runner import BenchmarkInterrupted

    cluster = "slurm" if launcher == "slurm" else "local"
    if cluster == "slurm" and not slurm.partition:
        raise ConfigError("--launcher slurm: give --partition or benchmark.slurm.partition")
    executor = submitit.AutoExecutor(folder=out / "submitit" / "%j", cluster=cluster)
    params: dict[str, Any] = {"timeout_min": slurm.time_min, "gpus_per_node": slurm.gpus_per_job,
                              "cpus_per_task": slurm.cpus_per_job, "tasks_per_node": 1, "nodes": 1,
                              "name": f"noisyseg-{out.name}"}
    if cluster == "local":
        params["gpus_per_node"] = 0
    if slurm.mem_gb is not None:
        params["mem_gb"] = slurm.mem_gb
    if cluster == "slurm":
        params["slurm_partition"] = slurm.partition
        if slurm.max_parallel:
            params["slurm_array_parallelism"] = slurm.max_parallel
        params.update({f"slurm_{k}": v for k, v in slurm.additional.items()})
    executor.update_parameters(**params)
    submitted = executor.map_array(run_job, jobs)
    records, errors, interrupted = [], [], []
    for job, sub in tqdm(list(zip(jobs, submitted)), desc=f"benchmark runs ({cluster})", disable=not progress):
        try:
            records.append(sub.result())
        except Exception as exc:  # noqa: BLE001 - submitit re-raises a job's error as FailedJobError
            text = str(exc)
            (interrupted if "BenchmarkInterrupted" in text else errors).append(
                f"{job.key.folder(out)}: job {sub.job_id} failed (log: {sub.paths.stderr}): {text.splitlines()[-1] if text else exc}")
    _raise_failures(errors, interrupted)
    if interrupted:
        raise BenchmarkInterrupted(interrupted[0])
    return records
