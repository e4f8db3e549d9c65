"""A local pool gives its workers the free jobs while another launch holds one: no worker waits
on a held lock while a free job is queued (the jobs here stand in for the runner's runs)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from noisyseg.benchmark.launch import file_lock, run_pool

WAIT_S = 60.0  # a worker's start-up on a loaded machine is far shorter


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def _try_job(job: tuple[str, str]) -> dict:
    """The runner's `run_job(wait=False)`: `held` raises LockBusy while its lock is taken;
    `first` waits (up to WAIT_S) for `second` to start, which only a second free worker can do."""
    folder, name = Path(job[0]), job[1]
    if name == "held":
        with file_lock(folder / "held.lock", wait=False):
            return {"name": name}
    (folder / f"{name}.started").write_text("")
    out = {"name": name}
    if name == "first":
        out["second_started_meanwhile"] = _wait_for(folder / "second.started", WAIT_S)
        (folder / "first.done").write_text("")
    return out


def _wait_job(job: tuple[str, str]) -> dict:
    """The runner's `run_job(wait=True)` for a held job: it waits on the lock."""
    with file_lock(Path(job[0]) / "held.lock"):
        return {"name": job[1], "after_first": (Path(job[0]) / "first.done").exists()}


def test_a_held_job_goes_last_and_both_workers_take_the_free_ones(tmp_path):
    names = ["held", "first", "second"]
    held = threading.Event()

    def other_launch() -> None:  # holds `held`'s lock until `first` is done (or WAIT_S passes)
        with file_lock(tmp_path / "held.lock"):
            held.set()
            _wait_for(tmp_path / "first.done", 2 * WAIT_S)

    thread = threading.Thread(target=other_launch)
    thread.start()
    assert held.wait(30)
    results = run_pool(_try_job, [(str(tmp_path), n) for n in names], names, workers=2, gpus=0, progress=False,
                       busy_fn=_wait_job)
    thread.join()
    assert [r["name"] for r in results] == names  # results in job order
    # before: one worker waited on the held lock, so `second` could start only after `first` was done
    assert results[1]["second_started_meanwhile"] is True
    assert results[0]["after_first"] is True  # the held job ran once the other launch let go
