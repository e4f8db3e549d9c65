"""Time the training process waits for data per step, with 0, 1 and 2 DataLoader workers.

    python benchmarks/bench_data.py [--la ../shared/data/LA] [--cases 4] [--steps 30]

Batches are the LA configuration's (4 x 112x112x80 patches, foreground oversampling,
flips/rot90 and intensity augmentation) drawn from real LA volumes (a 3D phantom when the
folder is absent). The training step is a stand-in for the GPU: the training process sleeps
for the H200 V-Net step time (0.137 s, `results/la_morph_h200`: 137 s for 1000 steps
including validation, so an upper bound), as its CPU thread would while the GPU computes.
Reported: the sampler's batches per second in this process beside the H200's steps per
second, and the mean wait for data per step (the time in `next()` on the DataLoader; the
first step, which includes starting the workers, reported apart).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from noisyseg.data import open_dataset
from noisyseg.data.loader import step_batches, to_device
from noisyseg.data.sampling import PatchSampler

H200_STEP_S = 0.137
DEV = torch.device("cpu")


def load_cases(la: Path, n: int):
    if la.is_dir():
        ds = open_dataset(la)
        return [r.load() for r in ds.train[:n]], f"{n} LA volumes from {la}"
    import tempfile

    from noisyseg.data.demo_data import write_phantom_demo

    root = write_phantom_demo(Path(tempfile.mkdtemp()) / "ph", n_train=n, n_test=1, shape=(192, 160, 88), seed=0)
    ds = open_dataset(root)
    return [r.load() for r in ds.train[:n]], f"{n} 3D phantoms of 192x160x88 (LA folder absent)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--la", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "LA")
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--step-s", type=float, default=H200_STEP_S, help="stand-in GPU step time (sleep)")
    args = ap.parse_args()
    cases, what = load_cases(args.la, args.cases)
    sampler = PatchSampler(cases, patch_size=[112, 112, 80], batch_size=4, fg_oversample=0.33, augment=True, seed=0)
    print(f"data: {what}; batch 4 x 112x112x80; stand-in step {args.step_s:.3f} s")

    n = 10
    t = time.perf_counter()
    for s in range(n):
        sampler.batch(s, 0)
    per_batch = (time.perf_counter() - t) / n
    print(f"sampler in this process: {per_batch:.3f} s per batch = {1 / per_batch:.1f} batches/s "
          f"(H200 V-Net: {1 / args.step_s:.1f} steps/s)")

    for workers in (0, 1, 2):
        it = step_batches(sampler, None, rank=0, start=0, max_steps=args.steps, num_workers=workers, pin_memory=False)
        waits = []
        for _ in range(args.steps):
            t = time.perf_counter()
            batch = next(it)
            waits.append(time.perf_counter() - t)
            to_device(batch, DEV)  # int64 labels (on a GPU: the cast runs there, after the copy)
            time.sleep(args.step_s)
        del it
        steady = waits[1:]
        mean = sum(steady) / len(steady)
        print(f"workers {workers}: wait for data {mean * 1000:7.1f} ms per step ({mean / args.step_s:5.1%} of the "
              f"step), max {max(steady) * 1000:6.1f} ms; first step {waits[0] * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
