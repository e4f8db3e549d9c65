"""DataLoader batches: a pure function of (seed, step, rank) whatever the worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noisyseg.data.case import Case
from noisyseg.data.loader import default_num_workers, step_batches, to_device
from noisyseg.data.sampling import PatchSampler


def _cases(n: int = 3) -> list[Case]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        lab = np.zeros((40, 36), dtype=np.int64)
        lab[10 + i:25, 8:20 + i] = 1
        out.append(Case(f"c{i}", rng.normal(size=(1, 40, 36)).astype(np.float32), lab, (1.0, 1.0), np.eye(4),
                        None, clean_label=lab.copy()))
    return out


def _sampler(seed: int = 5) -> PatchSampler:
    return PatchSampler(_cases(), patch_size=[16, 16], batch_size=3, fg_oversample=0.5, augment=True, seed=seed)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_the_batches_of_the_in_process_sampler(workers):
    sampler, meta = _sampler(), _sampler(seed=6)
    got = [to_device(b, torch.device("cpu"))
           for b in step_batches(sampler, meta, rank=1, start=3, max_steps=9, num_workers=workers, pin_memory=False)]
    assert len(got) == 6
    for step, batch in zip(range(3, 9), got):
        ref = sampler.batch(step, 1)
        for k in ("image", "label", "clean_label"):
            assert batch[k].dtype == ref[k].dtype and torch.equal(batch[k], ref[k]), (step, k)
        assert torch.equal(batch["meta_image"], meta.batch(step, 1)["image"])
    assert not torch.equal(got[0]["image"], got[1]["image"])


def test_creating_the_loader_leaves_the_global_torch_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    next(step_batches(_sampler(), None, rank=0, start=0, max_steps=2, num_workers=1, pin_memory=False))
    assert torch.equal(torch.rand(3), expected)


def test_batches_continue_unchanged_when_the_workers_are_terminated():
    import os
    import signal

    sampler = _sampler()
    it = step_batches(sampler, None, rank=0, start=0, max_steps=6, num_workers=2, pin_memory=False)
    got = [next(it)]
    for w in it.it._workers:  # SIGTERM to the process group reaches the workers too
        os.kill(w.pid, signal.SIGTERM)
    with pytest.warns(UserWarning, match="workers stopped"):
        got += list(it)
    assert len(got) == 6
    for step, batch in enumerate(got):
        assert torch.equal(batch["image"], sampler.batch(step)["image"]), step


def test_a_process_that_leaves_its_loader_behind_still_exits(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "leave.py"
    script.write_text(
        "import numpy as np\n"
        "from noisyseg.data.case import Case\n"
        "from noisyseg.data.loader import step_batches\n"
        "from noisyseg.data.sampling import PatchSampler\n"
        "lab = np.zeros((40, 36), dtype=np.int64); lab[5:20, 5:20] = 1\n"
        "c = [Case('a', np.zeros((1, 40, 36), np.float32), lab, (1.0, 1.0), np.eye(4), None)]\n"
        "s = PatchSampler(c, patch_size=[16, 16], batch_size=2, fg_oversample=0.5, augment=False)\n"
        "it = step_batches(s, None, rank=0, start=0, max_steps=50, num_workers=2, pin_memory=False)\n"
        "next(it)\n")  # exits with the iterator (and its workers) alive
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]


def test_default_workers_leave_the_training_threads_their_cores(monkeypatch):
    import noisyseg.data.loader as loader

    monkeypatch.setattr(loader, "available_cores", lambda: 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 12)
    assert default_num_workers("cpu") == 4
    assert default_num_workers("cuda") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_num_workers("cuda") == 3
    assert default_num_workers("cpu") == 0
