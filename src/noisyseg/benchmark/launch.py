"""Where a benchmark's jobs run: a local process pool (one job per GPU, or N CPU jobs on
equal shares of the cores) or a submitit job array (SLURM, or submitit's local executor).

The functions here run any picklable `fn(job)` over a list of jobs and return the results in
job order; what a job does (lock its run, skip, resume or train, evaluate) is the runner's.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import ConfigError, NoisySegError
from .spec import SlurmSpec


class BenchmarkInterrupted(Exception):
    """Training of one run stopped on a signal; its checkpoint is kept and a rerun of the same
    benchmark resumes it (the run is not evaluated or recorded as finished)."""


class _NotStarted(BenchmarkInterrupted):
    """A job the pool refused because the launch was already stopping."""


class LockBusy(Exception):
    """`file_lock(..., wait=False)` found the lock held by another process."""


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[None]:
    """An exclusive `flock` on `path` (created if missing), held for the block; waits while
    another process holds it, or raises `LockBusy` at once with `wait=False`. (On a shared
    filesystem the filesystem must support flock.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise LockBusy(f"{path}: held by another process") from e
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_STOPPING: Any = None  # in a pool process: the launch's stop event
_LAUNCHER = 0  # in a pool process: the launching process's pid


def _pool_init(slots: Any, stopping: Any, launcher: int) -> None:
    """A pool process takes a slot: its GPU (CUDA_VISIBLE_DEVICES) or its share of the CPU cores.
    Between jobs it ignores SIGINT / SIGTERM (the launcher stops it; training installs its own
    handlers, engine/stopping.py)."""
    global _STOPPING, _LAUNCHER
    _STOPPING, _LAUNCHER = stopping, launcher
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    kind, value = slots.get()
    if kind == "gpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = str(value)
    elif value:
        os.sched_setaffinity(0, value)


def _pool_job(fn: Callable[[Any], dict], job: Any) -> dict:
    """`fn(job)` in a pool process, refused once the launch is stopping (a signal stopped one of
    its runs, or the launcher was asked to stop) or the launcher is gone (jobs it had already
    handed to the pool would otherwise go on without it)."""
    if _STOPPING.is_set() or os.getppid() != _LAUNCHER:
        raise _NotStarted("not started: the benchmark was stopped; run the same command again to resume")
    try:
        return fn(job)
    except BenchmarkInterrupted:
        _STOPPING.set()
        raise


@contextlib.contextmanager
def _sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """While entered (main thread only), SIGTERM stops the launcher as Ctrl-C does."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _slots(workers: int, gpus: int) -> list[tuple[str, Any]]:
    if gpus:
        return [("gpu", i % gpus) for i in range(workers)]
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning
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


class _Failures:
    """Errors of finished jobs, raised once every job is done (the others go on meanwhile)."""

    def __init__(self):
        self.errors: list[tuple[str, BaseException]] = []
        self.interrupted: list[BaseException] = []  # a submitit job's error text says it was interrupted

    def add(self, name: str, exc: BaseException, interrupted: bool) -> None:
        if interrupted:
            self.interrupted.append(exc)
        else:
            self.errors.append((name, exc))

    def raise_any(self) -> None:
        if self.errors:
            name, exc = self.errors[0]
            more = f" (and {len(self.errors) - 1} more failed)" if len(self.errors) > 1 else ""
            if isinstance(exc, NoisySegError):  # bad input: one clear line, as without a launcher
                raise type(exc)(f"{exc}{more}") from exc
            raise RuntimeError(f"{name}: {type(exc).__name__}: {exc}{more}; finished runs are kept, run the same "
                               "command again to retry") from exc
        if self.interrupted:
            # the run that was stopped names the cause; jobs refused after it finish in any order
            ran = [e for e in self.interrupted if not isinstance(e, _NotStarted)]
            raise BenchmarkInterrupted(str((ran or self.interrupted)[0]))


def run_pool(fn: Callable[[Any], dict], jobs: Sequence[Any], names: Sequence[str], workers: int, gpus: int,
             progress: bool, order: Sequence[int] | None = None,
             busy_fn: Callable[[Any], dict] | None = None) -> list[dict]:
    """`fn(job)` for every job in `workers` local processes (one GPU each when `gpus`, else an
    equal share of the CPU cores each), started in `order` (indices into `jobs`; default: job
    order); results in job order. With `busy_fn`, a job whose `fn` raises `LockBusy` (its run
    is held by another launch) goes to the end of the queue as `busy_fn(job)` (which waits), so
    the workers take the free jobs first."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for s in _slots(workers, gpus):
        queue.put(s)
    stopping = ctx.Event()
    results: dict[int, dict] = {}
    failures = _Failures()
    with _sigterm_as_keyboard_interrupt(), ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_pool_init, initargs=(queue, stopping, os.getpid())) as pool, \
            tqdm(total=len(jobs), desc=f"benchmark runs ({workers} at once)", disable=not progress) as bar:
        pending = {pool.submit(_pool_job, fn, jobs[i]): i for i in (range(len(jobs)) if order is None else order)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        results[i] = fut.result()
                    except Exception as exc:  # noqa: BLE001 - raised once all jobs are done
                        if busy_fn is not None and isinstance(exc, LockBusy):
                            pending[pool.submit(_pool_job, busy_fn, jobs[i])] = i
                            continue
                        failures.add(names[i], exc, isinstance(exc, BenchmarkInterrupted))
                    bar.update()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: running trainings checkpoint and stop, no job starts
            stopping.set()
            for child in mp.active_children():
                os.kill(child.pid, signal.SIGTERM)
            pool.shutdown(wait=True, cancel_futures=True)
            raise BenchmarkInterrupted("interrupted; run the same command again to resume") from None
    failures.raise_any()
    return [results[i] for i in range(len(jobs))]


def run_submitit(fn: Callable[[Any], dict], jobs: Sequence[Any], names: Sequence[str], *, cluster: str,
                 slurm: SlurmSpec, folder: Path, job_name: str, progress: bool) -> list[dict]:
    """`fn(job)` for every job as one submitit job array, on SLURM (`cluster='slurm'`) or on
    this machine (`'local'`: submitit's local executor). Logs in `folder`."""
    try:
        import submitit
    except ImportError as exc:
        raise ConfigError("--launcher slurm needs submitit: pip install submitit") from exc
    if cluster == "slurm" and not slurm.partition:
        raise ConfigError("--launcher slurm: give --partition or benchmark.slurm.partition")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    params: dict[str, Any] = {"timeout_min": slurm.time_min, "gpus_per_node": slurm.gpus_per_job,
                              "cpus_per_task": slurm.cpus_per_job, "tasks_per_node": 1, "nodes": 1, "name": job_name}
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
    submitted = executor.map_array(fn, list(jobs))
    results = []
    failures = _Failures()
    for name, sub in tqdm(list(zip(names, submitted)), desc=f"benchmark runs ({cluster})", disable=not progress):
        try:
            results.append(sub.result())
        except Exception as exc:  # noqa: BLE001 - submitit re-raises a job's error as FailedJobError
            text = str(exc)
            last = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
            failures.add(name, RuntimeError(f"job {sub.job_id} failed ({last}); log {sub.paths.stderr}"),
                         "BenchmarkInterrupted" in text)
    failures.raise_any()
    return results
