"""Label-quality audit vs cleanlab on 2D data with known label errors.

Builds the MNI demo dataset, corrupts every training label with MT-Noise (morph), trains a
short run on the noisy labels, predicts the training images, then scores the given labels
with noisyseg.audit.label_quality and with cleanlab's
``cleanlab.segmentation.rank.get_label_quality_scores`` (when cleanlab is installed; skipped
otherwise). Printed per scorer: pooled per-pixel AUROC and average precision of the pixel
error score against the true error mask (given != clean), and the Spearman correlation of
the per-image error score with the true per-image noise (1 − Dice and changed fraction).
cleanlab's scores mean "quality" (high = good), so 1 − score is used as its error score.

    python benchmarks/bench_audit.py [--n-train 16] [--steps 60] [--seed 0] [--method supervised]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from noisyseg import api
from noisyseg.audit import auroc, average_precision, label_quality, spearman
from noisyseg.data.demo_data import write_mni_demo
from noisyseg.noise.apply import make_noisy_dataset
from noisyseg.noise.report import noise_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=16)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="supervised", help="training method of the run")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mni = write_mni_demo(tmp / "mni", n_train=args.n_train, n_test=2, seed=args.seed)
        noisy = make_noisy_dataset(mni, tmp / "noisy", protocol="morph", level=1.0, seed=args.seed,
                                   params={"size_range": (3, 5)}, progress=False)
        over = {"data": {"patch_size": [96, 112], "batch_size": 4},
                "net": {"channels": [16, 32, 64], "features": 16},
                "train": {"val_every": max(args.steps // 3, 1), "log_every": 10, "device": args.device}}
        t0 = time.perf_counter()
        api.train(data=noisy, out=tmp / "run", method=args.method, max_steps=args.steps, overrides=over,
                  progress=False)
        print(f"trained {args.method} for {args.steps} steps in {time.perf_counter() - t0:.1f} s")
        model, info, cfg = api.load_run(tmp / "run", device=args.device)
        ds = api.open_data(noisy)
        cases = [r.load() for r in ds.train]
        probs = np.stack([api.predict_image(model, c.image, info, cfg) for c in cases]).astype(np.float32)
        labels = np.stack([c.label for c in cases])
        truth = labels != np.stack([c.clean_label for c in cases])
        stats = [noise_stats(c.clean_label, c.label, ds.num_classes) for c in cases]
        dice_noise = [s["noise_level"] for s in stats]
        changed = [s["changed_fraction"] for s in stats]
        print(f"{len(cases)} images {labels.shape[1:]}, {ds.num_classes} classes, error-pixel rate "
              f"{truth.mean():.4f}, mean 1-Dice {np.mean(dice_noise):.3f}\n")

        results = []
        for method in ("self_confidence", "margin", "threshold"):
            for how in ("suspected_fraction", "mean_topk"):
                t0 = time.perf_counter()
                case, vox = label_quality(labels, probs, method=method, case_score_method=how, top_percent=1.0)
                dt = time.perf_counter() - t0
                results.append((f"noisyseg {method}/{how}", np.stack(vox), case, dt))
        try:
            from cleanlab.segmentation.rank import get_label_quality_scores
        except ImportError:
            print("cleanlab not installed: skipping the comparison (pip install cleanlab)\n")
        else:
            for method in ("softmin", "num_pixel_issues"):
                t0 = time.perf_counter()
                kw = {"downsample": 1, "n_jobs": 1} if method == "num_pixel_issues" else {}
                img_scores, pix_scores = get_label_quality_scores(labels, probs, method=method, verbose=False, **kw)
                dt = time.perf_counter() - t0
                results.append((f"cleanlab {method}", 1.0 - pix_scores, 1.0 - img_scores, dt))

        print(f"{'scorer':44s} {'pix AUROC':>9s} {'pix AP':>7s} {'rho 1-Dice':>10s} {'rho chg':>8s} {'time s':>7s}")
        for name, pix, img, dt in results:
            print(f"{name:44s} {auroc(truth, pix):9.4f} {average_precision(truth, pix):7.4f} "
                  f"{spearman(img, dice_noise):10.4f} {spearman(img, changed):8.4f} {dt:7.3f}")


if __name__ == "__main__":
    main()
