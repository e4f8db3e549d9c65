"""Step time of `clcs` (or `--method NAME`) against `supervised` on the same network and batch.

Run: ``python benchmarks/bench_clcs.py [--method clcs] [--device auto|cpu|cuda] [--amp] [--steps N]
[--repeats R] [--threads T] [--cases 2d 3d]``.

A step is what the training loop does per batch: `training_step` (under autocast when --amp on
CUDA), the finiteness check of the loss, zero_grad, backward, optimiser step and `after_step`.
Both methods get the same batch (with clean_label, so CLCS computes its selection logs too) and
the same network configuration; after warm-up iterations, blocks of N steps of each method are
timed in interleaved repeats and the median per-step times are compared. CLCS trains two
networks, so 2x is the floor; the target is <= 2.05x.

On CPU, glibc returns freed activation memory to the OS and page-faults it back on the next
step; CLCS holds both networks' activations at once (the two branches are coupled through
the vote and the discrepancy loss), a working set twice as large, which alone costs about 7%
on top of 2x. The training loop turns that trimming off on CPU (engine/cpu_memory.py), and so
does this benchmark unless `--trim-memory` is given.

Cases: 2d = U-Net [16, 32, 64, 128], batch 8 x 1 x 128 x 128, 3 classes;
3d = U-Net [8, 16, 32, 64], batch 2 x 1 x 64^3, 2 classes.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from noisyseg.config import MethodConfig, NetConfig
from noisyseg.engine.cpu_memory import keep_freed_memory
from noisyseg.methods import StepInfo, validate_method
from noisyseg.nets import net_factory

CASES = {
    "2d": dict(dims=2, channels=[16, 32, 64, 128], shape=(8, 1, 128, 128), classes=3),
    "3d": dict(dims=3, channels=[8, 16, 32, 64], shape=(2, 1, 64, 64, 64), classes=2),
}


def build(name: str, case: dict, device: torch.device):
    cls, params = validate_method(MethodConfig(name=name))
    torch.manual_seed(0)
    make = net_factory(NetConfig(channels=case["channels"]), case["dims"], case["shape"][1], case["classes"])
    method = cls(params, make, case["classes"], case["dims"]).to(device).train()
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    return method, opt


def make_batch(case: dict, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n, c, *s = case["shape"]
    label = torch.randint(0, case["classes"], (n, *s), generator=g)
    clean = torch.where(torch.rand(label.shape, generator=g) < 0.1, torch.randint_like(label, case["classes"]), label)
    image = torch.randn(case["shape"], generator=g) + label.unsqueeze(1).float()
    return {"image": image.to(device), "label": label.to(device), "clean_label": clean.to(device)}


def run_steps(method, opt, scaler, batch, n: int, step0: int, device: torch.device, amp: bool) -> float:
    """Seconds per step over n steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i in range(n):
        info = StepInfo(step0 + i, 10**6)  # far past CLCS's warm-up: the full objective is timed
        ctx = torch.autocast(device.type, dtype=torch.float16) if amp else contextlib.nullcontext()
        with ctx:
            out = method.training_step(batch, info)
        if not torch.isfinite(out.loss):
            raise RuntimeError("loss is not finite")
        opt.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        scaler.step(opt)
        scaler.update()
        method.after_step(info)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / n


def bench_case(key: str, device: torch.device, amp: bool, steps: int, repeats: int, warmup: int,
               timed: str = "clcs") -> float:
    case = CASES[key]
    batch = make_batch(case, device)
    runs = {}
    for name in ("supervised", timed):
        method, opt = build(name, case, device)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        run_steps(method, opt, scaler, batch, warmup, 10**5, device, amp)
        runs[name] = (method, opt, scaler)
    times: dict[str, list[float]] = {n: [] for n in runs}
    for r in range(repeats):
        order = ("supervised", timed) if r % 2 == 0 else (timed, "supervised")
        for name in order:
            method, opt, scaler = runs[name]
            times[name].append(run_steps(method, opt, scaler, batch, steps, 10**5 + warmup + r * steps,
                                         device, amp))
    sup, other = statistics.median(times["supervised"]), statistics.median(times[timed])
    ratio = other / sup
    target = " (target <= 2.05)" if timed == "clcs" else ""
    print(f"{key}: batch {tuple(case['shape'])}, U-Net {case['channels']}, {case['classes']} classes, "
          f"device {device}{' amp' if amp else ''}: supervised {sup * 1e3:.1f} ms/step, "
          f"{timed} {other * 1e3:.1f} ms/step, ratio {ratio:.3f}{target}", flush=True)
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="clcs", help="the method timed against supervised")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timed blocks per method")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per method first")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    ap.add_argument("--trim-memory", action="store_true",
                    help="CPU: leave glibc's default trimming on (the loop turns it off, see engine/cpu_memory.py)")
    ap.add_argument("--cases", nargs="+", default=["2d", "3d"], choices=sorted(CASES))
    args = ap.parse_args()
    if not args.trim_memory:
        keep_freed_memory()  # what the training loop does on CPU
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    amp = args.amp and dev.type == "cuda"
    for key in args.cases:
        bench_case(key, dev, amp, args.steps, args.repeats, args.warmup, args.method)


if __name__ == "__main__":
    main()
