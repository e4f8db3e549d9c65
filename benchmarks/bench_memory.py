"""Peak memory of a training process on the LA training set: cases in memory (int64 labels,
the loader before memory-mapping) against memory-mapped cases (uint8 labels).

    python benchmarks/bench_memory.py [--la ../shared/data/LA] [--steps 5] [--cases 12 24] [--target-spacing 1.25]

Each mode trains in a fresh process (a small 3D U-Net, 64x64x40 patches, no DataLoader
workers, a few steps, no validation set so that every volume is a training case) and
reports its peak resident set (ru_maxrss) and, at the end, its resident anonymous memory
(the process's own) and resident file pages (memory maps the kernel can reclaim and share).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys
from noisyseg import api
from noisyseg.engine.trainer import train
args = json.loads(sys.argv[1])
over = {"data": {"spatial_dims": 3, "patch_size": [64, 64, 40], "batch_size": 2, "val_fraction": 0.0,
                 "num_workers": 0, "in_memory": args["in_memory"], "target_spacing": args["spacing"]},
        "net": {"channels": [8, 16, 32], "features": 8, "norm": "instance"},
        "train": {"max_steps": args["steps"], "val_every": 1000, "log_every": 1, "device": "cpu"}}
ds = api.open_data(args["la"])
ds.train = ds.train[:args["cases"]]
train(api.make_config(None, overrides=over), ds, args["out"], progress=False)
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "anon_mb": int(status["RssAnon"].split()[0]) / 1024,
                  "file_mb": int(status["RssFile"].split()[0]) / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--la", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "LA")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--cases", type=int, nargs="+", default=[12, 24], help="training volumes (first N)")
    ap.add_argument("--target-spacing", type=float, default=None, help="resample to this spacing (mm) first")
    ap.add_argument("--out", type=Path, default=Path("/tmp/noisyseg_bench_memory"))
    args = ap.parse_args()
    if not args.la.is_dir():
        sys.exit(f"{args.la}: LA folder not found")
    import shutil

    from noisyseg.data import open_dataset

    n = len(open_dataset(args.la).train)
    spacing = None if args.target_spacing is None else [args.target_spacing] * 3
    print(f"LA: {n} training volumes on disk; target spacing {spacing or 'native (0.625 mm)'}; {args.steps} steps")
    for cases in args.cases:
        for in_memory in (True, False):
            out = args.out / ("memory" if in_memory else "mapped")
            shutil.rmtree(out, ignore_errors=True)
            arg = json.dumps({"la": str(args.la), "out": str(out), "steps": args.steps, "in_memory": in_memory,
                              "spacing": spacing, "cases": cases})
            res = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            mode = "in memory, int64 labels" if in_memory else "memory-mapped, uint8 labels"
            print(f"{min(cases, n):3d} volumes, {mode:28s} peak RSS {r['peak_mb']:6.0f} MB; at the end: anonymous "
                  f"{r['anon_mb']:6.0f} MB, file pages {r['file_mb']:5.0f} MB")
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
