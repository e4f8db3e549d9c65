"""Training-step time with channels-last convolution weights over contiguous ones, 2D and 3D.

    python benchmarks/bench_memory_format.py [--steps 15] [--repeats 3] [--threads 2]

The same network (the default 2D / 3D U-Net of noisyseg), batch and optimiser in both
formats, interleaved so that a slow moment of the machine hits both; the loss is CE + Dice.
2D: batch 8 of 160x160 (configs/acdc_cpu.yaml); 3D: batch 2 of 64x64x40
(configs/la_morph_cpu.yaml). Prints the median seconds per step of each and their ratio.
Target on CPU (`net.memory_format: auto` chooses channels-last there): ratio <= 0.9.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from noisyseg.config import NetConfig
from noisyseg.methods.losses import ce_dice_loss
from noisyseg.nets import net_factory

SHAPES = {2: (8, 1, 160, 160), 3: (2, 1, 64, 64, 40)}


def step_time(dims: int, channels_last: bool, steps: int) -> float:
    """Seconds per training step of a freshly built U-Net (after two warm-up steps)."""
    torch.manual_seed(0)
    net = net_factory(NetConfig(), dims, 1, 4)()
    if channels_last:
        net = net.to(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    shape = SHAPES[dims]
    x = torch.randn(shape, generator=gen)
    y = torch.randint(0, 4, (shape[0],) + shape[2:], generator=gen)

    def one() -> None:
        loss = ce_dice_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for dims in (2, 3):
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for cl in (False, True):
                times[cl].append(step_time(dims, cl, args.steps))
        base, fast = statistics.median(times[False]), statistics.median(times[True])
        print(f"{dims}D  contiguous {base:.4f} s/step  channels-last {fast:.4f} s/step  "
              f"ratio {fast / base:.3f}  (target <= 0.9)")


if __name__ == "__main__":
    main()
