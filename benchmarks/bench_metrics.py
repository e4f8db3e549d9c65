"""Speed of noisyseg's HD95 + ASD against medpy 0.5.2 and MONAI on an LA-sized volume.

Run: ``python benchmarks/bench_metrics.py [--repeats N] [--shape X Y Z] [--spacing S]``.
Builds a 192x160x88 volume (spacing 0.625 mm, like the LA MRI) with a blob-shaped truth and a
perturbed prediction, checks that the values agree, and prints the times and the speed ratios.
medpy (GPL, benchmark only: ``pip install medpy==0.5.2``) is skipped when absent.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from scipy import ndimage

from noisyseg.metrics import surface_metrics


def make_blobs(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A left-atrium-sized smooth blob (truth) and a shifted, bumpier version of it (prediction)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.35, 0.4, 0.45])[:, None, None, None]) ** 2).sum(0))
    bumps = ndimage.gaussian_filter(rng.standard_normal(shape), 6)
    bumps /= np.abs(bumps).max()
    truth = radius + 0.35 * bumps < 1.0
    bumps2 = ndimage.gaussian_filter(rng.standard_normal(shape), 4)
    bumps2 /= np.abs(bumps2).max()
    pred = np.roll(radius, (3, -2, 1), axis=(0, 1, 2)) + 0.35 * bumps + 0.3 * bumps2 < 1.0
    pred[20:26, 20:26, 10:14] = True  # a false-positive island far from the structure
    return pred, truth


def timeit(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs=3, default=(192, 160, 88))
    ap.add_argument("--spacing", type=float, default=0.625)
    args = ap.parse_args()
    shape, sp = tuple(args.shape), (args.spacing,) * 3
    pred, truth = make_blobs(shape)
    print(f"volume {shape}, spacing {sp} mm, truth {truth.sum()} voxels, pred {pred.sum()} voxels, "
          f"median of {args.repeats} runs")

    results: dict[str, tuple[float, tuple[float, float]]] = {}
    for conv in ("monai", "medpy"):
        t, v = timeit(lambda c=conv: surface_metrics(pred, truth, sp, convention=c), args.repeats)
        results[f"noisyseg[{conv}]"] = (t, v)
    t, v = timeit(lambda: surface_metrics(pred, truth, sp, method="edt"), args.repeats)
    results["noisyseg[monai, EDT only]"] = (t, v)

    try:
        from medpy.metric import binary as mb

        t, v = timeit(lambda: (mb.hd95(pred, truth, voxelspacing=sp), mb.asd(pred, truth, voxelspacing=sp)),
                      args.repeats)
        results["medpy hd95+asd"] = (t, v)
    except ImportError:
        print("medpy not installed: skipped (pip install medpy==0.5.2)")

    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    yp = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    yt = torch.from_numpy(np.stack([~truth, truth])[None].astype(np.float32))

    def monai_both():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd = compute_hausdorff_distance(yp, yt, percentile=95, spacing=sp)
            mean = compute_average_surface_distance(yp, yt, symmetric=True, spacing=sp)
        return float(hd[0, 0]), float(mean[0, 0])

    results["monai hd95+asd(symmetric)"] = timeit(monai_both, args.repeats)

    for name, (t, (hd, mean)) in results.items():
        print(f"  {name:28s} {t * 1000:9.1f} ms   hd95 {hd:.6f} mm   asd {mean:.6f} mm")

    ok = True
    ours_monai, ours_medpy = results["noisyseg[monai]"], results["noisyseg[medpy]"]
    if "medpy hd95+asd" in results:
        same = np.allclose(ours_medpy[1], results["medpy hd95+asd"][1], rtol=1e-9)
        ok &= same
        print(f"medpy values agree with noisyseg[medpy]: {same}")
        print(f"speed-up vs medpy: {results['medpy hd95+asd'][0] / ours_medpy[0]:.1f}x (medpy convention), "
              f"{results['medpy hd95+asd'][0] / ours_monai[0]:.1f}x (monai convention)")
    same = np.allclose(ours_monai[1], results["monai hd95+asd(symmetric)"][1], rtol=1e-5)
    ok &= same
    print(f"MONAI values agree with noisyseg[monai] (MONAI uses float32): {same}")
    print(f"speed-up vs MONAI: {results['monai hd95+asd(symmetric)'][0] / ours_monai[0]:.1f}x")
    if "medpy hd95+asd" in results:
        print(f"EDT-only path (no KD-tree) vs medpy: "
              f"{results['medpy hd95+asd'][0] / results['noisyseg[monai, EDT only]'][0]:.1f}x")
    if not ok:
        raise SystemExit("values disagree")


if __name__ == "__main__":
    main()
