"""torchrun semantics with 2 CPU processes on gloo (spawned here, each running the trainer as
torchrun would): a stop request reaching one rank only, a rank killed mid-run then resumed,
equal weights on every rank (DDP methods and the all-reduce of the meta-learning ones)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from noisyseg.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

TINY = {"data": {"patch_size": [64, 64], "batch_size": 2, "val_fraction": 0.2, "num_workers": 0},
        "net": {"channels": [4, 8], "features": 4, "num_res_units": 0},
        "train": {"max_steps": 8, "val_every": 4, "log_every": 2, "ckpt_every": 2, "device": "cpu"}}


def _rank_main(rank: int, world: int, port: int, data: str, out: str, report: str, method: str, max_steps: int,
               resume: bool, event: str | None, event_step: int, params: dict) -> None:
    """One process: torchrun's environment, then the trainer; saves its final weights and result."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from noisyseg import api
    from noisyseg.engine import distributed, trainer

    final: list[torch.Tensor] = []
    check = distributed.check_in_sync

    def keep_weights(module):  # called by every rank once its loop has ended
        final.append(torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()]))
        return check(module)

    distributed.check_in_sync = keep_weights
    if rank == 1 and event in ("sigterm", "kill"):
        poly = trainer.set_poly_lr

        def poly_then_event(optimizer, cfg, step):
            if step == event_step:
                if event == "kill":
                    os._exit(9)  # as a SIGKILL: no checkpoint, nothing flushed
                os.kill(os.getpid(), signal.SIGTERM)  # only this rank is asked to stop
            return poly(optimizer, cfg, step)

        trainer.set_poly_lr = poly_then_event
    over = {**TINY, "train": {**TINY["train"], "max_steps": max_steps}, "method": {"name": method, "params": params}}
    res = api.train(data=data, out=out, overrides=over, resume=resume, progress=False)
    torch.save({"steps_done": res.steps_done, "interrupted": res.interrupted, "best_score": res.best_score,
                "is_main": res.is_main, "params": final[0]}, Path(report) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(tmp: Path, data: Path, out: Path, *, method: str = "supervised", max_steps: int = 8,
              resume: bool = False, event: str | None = None, event_step: int = 0,
              timeout: float = 240, params: dict | None = None) -> tuple[list[dict] | None, bool]:
    """Start 2 ranks; returns (each rank's report, or None if a rank failed; whether all exited
    cleanly). A rank still running once another failed is killed, as torchrun would."""
    report = tmp / f"report_{time.monotonic_ns()}"
    report.mkdir()
    ctx = mp.start_processes(_rank_main, args=(2, _free_port(), str(data), str(out), str(report), method, max_steps,
                                              resume, event, event_step, params or {}),
                             nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    ok = True
    while True:
        try:
            if ctx.join(timeout=1):
                break
        except Exception:  # a rank raised or died: stop the others (torchrun's behaviour)
            ok = False
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            break
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("ranks did not finish (hung in a collective?)")
    if not ok:
        return None, False
    return [torch.load(report / f"rank{r}.pt", weights_only=True) for r in range(2)], True


def test_a_stop_request_to_one_rank_stops_both_at_the_same_step(mni_small, tmp_path):
    # co-teaching: DDP over a method's two networks
    reports, ok = run_ranks(tmp_path, mni_small, tmp_path / "r", method="coteaching", max_steps=8, event="sigterm",
                            event_step=2)
    assert ok
    # the signal arrived during step 2 on rank 1: both finish that step, checkpoint, stop
    assert [r["steps_done"] for r in reports] == [3, 3] and all(r["interrupted"] for r in reports)
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3
    assert torch.equal(reports[0]["params"], reports[1]["params"])
    assert [r["is_main"] for r in reports] == [True, False]


def test_resume_after_killing_one_rank_equals_an_uninterrupted_run(mni_small, tmp_path):
    full, ok = run_ranks(tmp_path, mni_small, tmp_path / "full", max_steps=8)
    assert ok and torch.equal(full[0]["params"], full[1]["params"])
    # rank 1 reports rank 0's validation result, not -inf
    assert full[1]["best_score"] == full[0]["best_score"] > float("-inf")
    _, ok = run_ranks(tmp_path, mni_small, tmp_path / "cut", max_steps=8, event="kill", event_step=5)
    assert not ok
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 4  # ckpt_every 2
    resumed, ok = run_ranks(tmp_path, mni_small, tmp_path / "cut", max_steps=8, resume=True)
    assert ok and [r["steps_done"] for r in resumed] == [8, 8]
    for r in range(2):
        assert torch.equal(resumed[r]["params"], full[r]["params"]), r
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["method"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_meta_learning_method_keeps_the_ranks_equal(mni_small, tmp_path):
    """l2b takes gradients inside its step (no DDP): the loop's all-reduce keeps ranks equal."""
    reports, ok = run_ranks(tmp_path, mni_small, tmp_path / "r", method="l2b", max_steps=3,
                            params={"meta_start": 0.0})  # the meta stage from the first step
    assert ok and [r["steps_done"] for r in reports] == [3, 3]
    assert torch.equal(reports[0]["params"], reports[1]["params"])


def _warmup_rank(rank: int, world: int, port: int, report: str) -> None:
    """One rank of a gloo group: a MetaWarmup update where only rank 1's prediction is right."""
    import torch.distributed as dist

    from noisyseg.methods.meta_warmup import MetaWarmup

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    warm = MetaWarmup(0.04)
    label = torch.ones(1, 4, 4, dtype=torch.long)
    warm.update(label if rank == 1 else torch.zeros_like(label), label, 2)
    torch.save({"agreement": warm.agreement.clone(), "on": warm.meta_on.clone()}, Path(report) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_ranks_leave_the_meta_warmup_at_the_same_step(tmp_path):
    """The stage switch is averaged over ranks (Dice 0 on rank 0, 1 on rank 1: both 0.1 · 0.5):
    a rank that switched alone would wait forever in the meta stage's collectives."""
    mp.start_processes(_warmup_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for g in got:
        assert float(g["agreement"]) == pytest.approx(0.05) and bool(g["on"])


def test_a_meta_stage_with_collectives_runs_on_two_ranks(mni_small, tmp_path):
    """metadcseg leaves its warm-up within a few steps and trains on in step on both ranks."""
    reports, ok = run_ranks(tmp_path, mni_small, tmp_path / "r", method="metadcseg", max_steps=6,
                            params={"meta_start": 0.02, "dcd_start": 0.0})
    assert ok and [r["steps_done"] for r in reports] == [6, 6]
    assert torch.equal(reports[0]["params"], reports[1]["params"])
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=False)["method"]
    assert bool(state["warmup.meta_on"])  # the meta stage was reached within the 6 steps
