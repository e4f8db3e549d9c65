"""Stopping a local benchmark pool: no job starts after a signal, and no pool process outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from noisyseg.benchmark.launch import BenchmarkInterrupted, run_pool
from noisyseg.engine.stopping import StopFlag


def _job(folder: str) -> dict:
    """A pool job that behaves like a training run: it writes `started` and its pid, then waits
    (up to 60 s) until a signal asks it to stop, writes `stopped` and raises BenchmarkInterrupted;
    a folder holding `interrupt` is interrupted at once."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    with StopFlag() as flag:
        (path / "started").write_text(str(os.getpid()))  # once the handlers are in place
        deadline = time.monotonic() + (0 if (path / "interrupt").exists() else 60)
        while not flag.requested and time.monotonic() < deadline:
            time.sleep(0.05)
    (path / "stopped").write_text("")
    raise BenchmarkInterrupted(f"{folder}: interrupted")


def test_an_interrupted_job_stops_the_launch(tmp_path):
    jobs = [str(tmp_path / name) for name in ("a", "b", "c")]
    Path(jobs[0]).mkdir()
    (Path(jobs[0]) / "interrupt").write_text("")
    with pytest.raises(BenchmarkInterrupted, match="a: interrupted"):
        run_pool(_job, jobs, ["a", "b", "c"], workers=1, gpus=0, progress=False)
    assert (tmp_path / "a" / "stopped").exists()
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # handed to the pool, never started


LAUNCHER = """
import sys
sys.path.insert(0, {tests!r})
from test_pool_stop import _job
from noisyseg.benchmark.launch import BenchmarkInterrupted, run_pool
jobs = [{a!r}, {b!r}, {c!r}]
try:
    run_pool(_job, jobs, ["a", "b", "c"], workers=1, gpus=0, progress=False)
except BenchmarkInterrupted as exc:
    print(exc)
    sys.exit(3)
"""


def test_sigterm_to_the_launcher_alone_stops_its_running_job_and_starts_no_other(tmp_path):
    a, b, c = (str(tmp_path / name) for name in ("a", "b", "c"))
    code = LAUNCHER.format(tests=str(Path(__file__).parent), a=a, b=b, c=c)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    started = Path(a) / "started"
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    proc.send_signal(signal.SIGTERM)  # the launcher only, as `kill PID` does
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3 and "resume" in out
    assert (Path(a) / "stopped").exists()  # the running job got the signal and stopped as training does
    assert not Path(b).exists() and not Path(c).exists()
    worker = int(started.read_text())
    with pytest.raises(ProcessLookupError):  # the pool process is gone too
        os.kill(worker, 0)


def test_the_stopped_run_names_the_interruption_whatever_order_the_refused_jobs_finish_in():
    from noisyseg.benchmark.launch import _Failures, _NotStarted

    failures = _Failures()
    failures.add("b", _NotStarted("not started: the benchmark was stopped"), True)
    failures.add("a", BenchmarkInterrupted("a: interrupted at step 3"), True)
    failures.add("c", _NotStarted("not started: the benchmark was stopped"), True)
    with pytest.raises(BenchmarkInterrupted, match="a: interrupted at step 3"):
        failures.raise_any()
