"""Step time of the shared training loop over a bare PyTorch loop (same network, batches, optimiser).

    python benchmarks/bench_loop.py [--steps 60] [--repeats 3]

Both loops draw the same batches from the same PatchSampler, so the ratio measures what
the loop adds: schedule, AMP context, finite-loss check, logging, step bookkeeping. The
allocator setting the loop applies on CPU (engine/cpu_memory.py) is applied first, so both
loops run with it.
Target: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch

from noisyseg import api
from noisyseg.data.sampling import PatchSampler
from noisyseg.data.demo_data import write_mni_demo
from noisyseg.engine.cpu_memory import keep_freed_memory
from noisyseg.engine.trainer import build_method, split_train_val
from noisyseg.methods.losses import ce_dice_loss

OVERRIDES = {
    "data": {"patch_size": [96, 112], "batch_size": 8, "val_fraction": 0.2},
    "net": {"channels": [16, 32, 64, 128], "features": 16},
    "optim": {"name": "adam", "lr": 1e-3},
}


def bare_loop(data: Path, steps: int) -> float:
    """Seconds per step of a hand-written loop on the same network and batches."""
    cfg = api.make_config(None, overrides={**OVERRIDES, "train": {"max_steps": steps}})
    ds = api.open_data(data)
    ids = [r.id for r in ds.train]
    train_ids, _ = split_train_val(ids, cfg.data.val_fraction, cfg.train.seed, set(ds.trusted_ids))
    cases = [ds.case(i).load() for i in train_ids]
    sampler = PatchSampler(cases, patch_size=cfg.data.patch_size, batch_size=cfg.data.batch_size,
                           fg_oversample=cfg.data.fg_oversample, augment=True, seed=0)
    net = build_method(cfg, 1, ds.num_classes, 2).net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    net.train()
    t0 = time.perf_counter()
    for step in range(steps):
        batch = sampler.batch(step)
        loss = ce_dice_loss(net(batch["image"]), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def noisyseg_loop(data: Path, steps: int, out: Path) -> float:
    """Seconds per step of noisyseg's loop, from its own log (validation excluded)."""
    over = {**OVERRIDES, "train": {"max_steps": steps, "val_every": 10 * steps, "log_every": 10,
                                   "ckpt_every": 10 * steps}}
    api.train(data=data, out=out, method="supervised", overrides=over, progress=False)
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    return float(rows[-1]["time/step_s"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_mni_demo(tmp / "mni", n_train=12, n_test=2)
        bare_loop(data, 5)  # warm-up: imports, allocator
        ours, bare = [], []
        for r in range(args.repeats):
            bare.append(bare_loop(data, args.steps))
            ours.append(noisyseg_loop(data, args.steps, tmp / f"run{r}"))
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"bare PyTorch loop : {b * 1000:.1f} ms/step")
        print(f"noisyseg loop     : {o * 1000:.1f} ms/step")
        print(f"ratio             : {o / b:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
