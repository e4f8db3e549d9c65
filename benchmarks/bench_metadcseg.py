"""Step time of `metadcseg` over `supervised`, and of the slow double-backward look-ahead.

Run: ``python benchmarks/bench_metadcseg.py [--repeats N] [--batch B] [--size S] [--arch unet|unetpp]
[--device cpu|cuda]``.

All three steps use the same network, the same training batch and a meta batch of the same
size; a step is forward, loss, backward and an Adam update, as in the training loop:

- supervised: CE + Dice on the given labels;
- metadcseg (fast): meta gradient g once, one forward-mode pass for all per-pixel inner
  products, then the weighted training loss;
- metadcseg (reference): the same step with the raw weights from the explicit look-ahead
  θ' = θ − η∇θ Σ ε_i ℓ_i and −∂L_meta(θ')/∂ε by double backward (the route of L2B);
- metadcseg (head): `lookahead_scope: head`, the look-ahead of the 1x1 head alone (an option,
  not the method's default).

Variants are interleaved (one step of each per round) after warm-up; medians are printed.
The two passes of the fast weights are also timed alone (meta gradient; forward-mode pass):
with the weighted training step (about one supervised step) they are the floor of the exact
route, printed as `floor`.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
import statistics
import time

import torch

from noisyseg.config import MethodConfig, NetConfig
from noisyseg.methods import StepInfo, validate_method
from noisyseg.methods.meta_weights import MetaWeights, meta_gradient, normalise_weights, pixel_loss_directional
from noisyseg.methods.metadcseg import MetaDCSeg
from noisyseg.nets import net_factory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "methods"))
from meta_reference import slow_reference  # noqa: E402  (the tests' slow reference)


class DoubleBackwardMetaDCSeg(MetaDCSeg):
    """MetaDCSeg whose raw weights come from the explicit look-ahead and double backward."""

    def compute_weights(self, image, label, meta_image, meta_label):
        lr = self.params.lookahead_lr
        raw_r, raw_p, pseudo, meta = slow_reference(self.net, image, label, None, meta_image, meta_label, lr)
        alpha, beta, uniform = normalise_weights(raw_r, raw_p)
        return MetaWeights(alpha, beta, raw_r, raw_p, pseudo, meta, uniform)


def build(method: str, net_cfg: NetConfig, device: torch.device):
    params = {"lookahead_scope": "head"} if method == "head" else {}
    name = "metadcseg" if method in ("reference", "head") else method
    cls, params = validate_method(MethodConfig(name=name, params=params))
    cls = DoubleBackwardMetaDCSeg if method == "reference" else cls
    torch.manual_seed(0)
    m = cls(params, net_factory(net_cfg, 2, 1, 2), 2, 2).to(device).train()
    return m, torch.optim.Adam(m.parameters(), lr=1e-4)


def make_batch(batch: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    lab = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2).long()
    label = lab.expand(batch, size, size).clone()
    noisy = label.clone()
    noisy[:, : size // 8] = 1  # a wrong band
    out = {"image": torch.randn(batch, 1, size, size, generator=g) + label[:, None],
           "label": noisy, "meta_image": torch.randn(batch, 1, size, size, generator=g) + label[:, None],
           "meta_label": label}
    return {k: v.to(device) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--arch", choices=["unet", "unetpp"], default="unet")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net_cfg = NetConfig(arch=args.arch) if args.arch == "unet" else \
        NetConfig(arch="unetpp", channels=[16, 32, 64, 128, 256], features=16)
    batch = make_batch(args.batch, args.size, device)
    variants = {name: build(name, net_cfg, device) for name in ("supervised", "metadcseg", "reference", "head")}
    info = StepInfo(500, 1000)  # stage 2: DCD on

    def step(name: str) -> None:
        method, opt = variants[name]
        out = method.training_step(batch, info)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    net = variants["metadcseg"][0].net
    g, _ = meta_gradient(net, batch["meta_image"], batch["meta_label"])
    work = {name: functools.partial(step, name) for name in variants}
    work["meta gradient"] = lambda: meta_gradient(net, batch["meta_image"], batch["meta_label"])
    work["forward-mode"] = lambda: pixel_loss_directional(net, batch["image"], batch["label"], g)

    def timed(name: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        work[name]()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        for name in work:
            timed(name)
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(args.repeats):
        for name in work:
            times[name].append(timed(name))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.arch} 2D, batch {args.batch} of {args.size}x{args.size}, meta batch {args.batch}, "
          f"device {device}, threads {torch.get_num_threads()}, median of {args.repeats} interleaved steps")
    for k, v in med.items():
        print(f"  {k:13s} {1000 * v:8.1f} ms")
    sup = med["supervised"]
    print(f"floor of the exact route (meta gradient + forward-mode pass + one supervised step): "
          f"{(med['meta gradient'] + med['forward-mode']) / sup + 1:.2f}x "
          f"(meta {med['meta gradient'] / sup:.2f} + forward-mode {med['forward-mode'] / sup:.2f} + 1)")
    print(f"metadcseg (fast) / supervised:            {med['metadcseg'] / med['supervised']:.2f}x (target <= 2.5x)")
    print(f"metadcseg (double backward) / supervised: {med['reference'] / med['supervised']:.2f}x")
    print(f"metadcseg (head look-ahead) / supervised: {med['head'] / med['supervised']:.2f}x")


if __name__ == "__main__":
    main()
