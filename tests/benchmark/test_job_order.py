"""Order of benchmark jobs: the costliest runs start first, results stay in plan order."""

from __future__ import annotations

import time
from pathlib import Path

from noisyseg.benchmark.launch import run_pool
from noisyseg.benchmark.runkey import RunKey
from noisyseg.benchmark.runner import longest_first
from noisyseg.benchmark.spec import CLEAN_CEILING
from noisyseg.methods.registry import get_method_class


def test_longest_first_sorts_by_relative_cost_and_keeps_ties_in_plan_order():
    keys = [RunKey("clean", CLEAN_CEILING, 0), RunKey("0.5", "supervised", 0), RunKey("0.5", "clcs", 0),
            RunKey("0.5", "trinet", 0), RunKey("0.5", "gce", 0), RunKey("0.5", "clcs", 1)]
    costs = [get_method_class(m).relative_cost for m in ("supervised", "clcs", "trinet", "gce")]
    assert costs[2] > costs[1] > costs[0] == costs[3]  # the measured ranking this test relies on
    assert longest_first(keys) == [3, 2, 5, 0, 1, 4]


def _stamp(path: Path) -> int:
    """A pool job: writes its start time into `path` (one worker: one clock)."""
    t = time.perf_counter_ns()
    path.write_text(str(t))
    return t


def test_pool_starts_jobs_in_the_given_order_and_returns_them_in_job_order(tmp_path):
    files = [tmp_path / name for name in ("a", "b", "c", "d")]
    out = run_pool(_stamp, files, [f.name for f in files], workers=1, gpus=0, progress=False, order=[2, 0, 3, 1])
    assert out == [int(f.read_text()) for f in files]  # each job's own result, in job order
    started = sorted(files, key=lambda f: int(f.read_text()))
    assert [f.name for f in started] == ["c", "a", "d", "b"]
