"""Speed of the MT-Noise (morph) and Markov boundary generators on an LA-size volume.

LA volumes are 576 x 576 x 88 with one atrium of ~3 % of the voxels. Each generator is
timed (best of ``--repeats``) and reported as a ratio to a reference operation timed in
the same process: one scipy.ndimage.binary_dilation of the full volume with a 3x3x3
element, so the ratios carry across machines. Target: < 1 s each on a 2-core machine.

    python benchmarks/bench_noise.py [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from noisyseg.noise import markov, morph

SHAPE = (576, 576, 88)


def la_like_volume(seed: int = 0, target_fraction: float = 0.03) -> np.ndarray:
    """One smooth, irregular blob ('atrium') of ~target_fraction of the voxels (uint8)."""
    rng = np.random.default_rng(seed)
    # build on a 4x coarser grid, then upsample: cheap and smooth
    coarse = tuple(s // 4 for s in SHAPE)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in coarse], indexing="ij")
    center = [0.5 * coarse[0], 0.45 * coarse[1], 0.5 * coarse[2]]
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 3)
    noise /= noise.std()
    # radii chosen so that the ellipsoid is ~3 % of the volume, elongated like an atrium
    vol = np.prod(coarse) * target_fraction
    a = (vol / (4 / 3 * np.pi * 1.0 * 0.8 * 0.5)) ** (1 / 3)
    radii = [a, 0.8 * a, 0.5 * a]
    r = np.sqrt(sum(((g - c) / rr) ** 2 for g, c, rr in zip(grids, center, radii)))
    small = (r <= 1.0 + 0.15 * noise).astype(np.uint8)
    big = ndimage.zoom(small, 4, order=0)
    out = np.zeros(SHAPE, dtype=np.uint8)
    out[: big.shape[0], : big.shape[1], : big.shape[2]] = big
    return out


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    label = la_like_volume(args.seed)
    frac = float(label.mean())
    print(f"volume {SHAPE}, foreground {100 * frac:.2f} % of voxels")

    st = ndimage.generate_binary_structure(3, 3)
    ref = best_of(lambda: ndimage.binary_dilation(label, structure=st), args.repeats)
    print(f"reference binary_dilation 3x3x3, full volume: {ref:.3f} s")

    rows = []
    for name, fn in [
        ("morph dilate 15", lambda s: morph(label, rng=np.random.default_rng(s), op="dilate", size=15)),
        ("morph erode 15", lambda s: morph(label, rng=np.random.default_rng(s), op="erode", size=15)),
        ("morph random", lambda s: morph(label, rng=np.random.default_rng(s))),
        ("markov T=10", lambda s: markov(label, rng=np.random.default_rng(s), iterations=10)),
        ("markov T=20", lambda s: markov(label, rng=np.random.default_rng(s), iterations=20)),
    ]:
        counter = iter(range(10**6))
        t = best_of(lambda: fn(args.seed + next(counter)), args.repeats)
        rows.append((name, t))
        flag = "ok" if t < 1.0 else "SLOW (target < 1 s)"
        print(f"{name:18s} {t:7.3f} s   {t / ref:6.2f} x reference   {flag}")
    return 0 if all(t < 1.0 for _, t in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
