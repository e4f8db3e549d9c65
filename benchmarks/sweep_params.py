"""Choose a method's defaults by evidence: one benchmark config, a grid of method parameters,
several seeds, the same noisy labels for every point.

    python benchmarks/sweep_params.py --config configs/demo.yaml --method clcs \
        --grid status=count,predicted --grid lambda_nbl=1,0.1 --seeds 3 --out sweeps/demo_clcs

Writes one benchmark folder per grid point (only that method) and one `baseline/` folder
(`supervised` on the clean and on the noisy labels), all with the config's noise and split,
and prints per point: the mean over seeds of the test Dice (averaged over cases and
classes) ± its std over seeds, the recovered share of the noise gap
(method − supervised) / (clean − supervised), and the per-class Dice. `sweep.json` in
--out records every number with the config, seeds and package versions. The config's own
`method_params` for the method are replaced by each grid point (the defaults otherwise).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml


def _value(text: str):
    return yaml.safe_load(text)


def seed_scores(bench_dir: Path, method_title: str) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Per seed: the test Dice averaged over classes then cases; and per class, per seed."""
    per: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with (bench_dir / "results.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["method"] == method_title and row["dice"] not in ("", "nan"):
                per[int(row["seed"])][row["case"] + "\t" + row["target"]].append(float(row["dice"]))
    overall, by_class = {}, defaultdict(dict)
    for seed, cells in per.items():
        cases: dict[str, list[float]] = defaultdict(list)
        classes: dict[str, list[float]] = defaultdict(list)
        for key, vals in cells.items():
            case, target = key.split("\t")
            cases[case].append(float(np.mean(vals)))
            classes[target].append(float(np.mean(vals)))
        overall[seed] = float(np.mean([np.mean(v) for v in cases.values()]))
        for target, vals in classes.items():
            by_class[target][seed] = float(np.mean(vals))
    return overall, dict(by_class)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--grid", action="append", default=[], help="PARAM=v1,v2,... (repeatable)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-steps", type=int, default=None)
    args = ap.parse_args(argv)

    from noisyseg.benchmark.runner import run_benchmark
    from noisyseg.runinfo import package_versions

    names, values = [], []
    for g in args.grid:
        name, _, vals = g.partition("=")
        names.append(name)
        values.append([_value(v) for v in vals.split(",")])
    points = [dict(zip(names, combo)) for combo in itertools.product(*values)] or [{}]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path(args.config).read_text())
    raw["benchmark"]["method_params"] = {}  # each point replaces the config's parameters
    config = out / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    common = dict(data=args.data, seeds=args.seeds, max_steps=args.max_steps, progress=False)
    run_benchmark(config, out / "baseline", methods=["supervised"], **common)
    clean, _ = seed_scores(out / "baseline", "supervised (clean labels)")
    noisy, noisy_cls = seed_scores(out / "baseline", "supervised")
    seeds = sorted(noisy)
    gap = {s: clean[s] - noisy[s] for s in seeds}
    record = {"config": args.config, "method": args.method, "seeds": seeds, "versions": package_versions(),
              "clean": clean, "supervised": noisy, "supervised_per_class": noisy_cls, "points": []}

    def line(title: str, scores: dict[int, float], per_class: dict[str, dict[int, float]] | None = None) -> str:
        v = np.array([scores[s] for s in seeds])
        rec = np.mean([(scores[s] - noisy[s]) / gap[s] for s in seeds]) if all(gap.values()) else float("nan")
        diff = v - np.array([noisy[s] for s in seeds])
        cls = "  ".join(f"{t}: {100 * np.mean(list(d.values())):.1f}" for t, d in (per_class or {}).items())
        return (f"{title:42s} {100 * v.mean():6.2f} ± {100 * v.std(ddof=1) if len(v) > 1 else 0:5.2f}"
                f"  vs supervised {100 * diff.mean():+6.2f} (paired std {100 * diff.std(ddof=1) if len(v) > 1 else 0:4.2f})"
                f"  recovered {rec:+.2f}  {cls}")

    print(line("supervised (clean labels)", clean))
    print(line("supervised", noisy, noisy_cls))
    for k, point in enumerate(points):
        folder = out / ("point_" + "_".join(f"{n}-{v}" for n, v in point.items()) if point else "point_defaults")
        run_benchmark(config, folder, methods=[args.method], **common,
                      benchmark_overrides={"clean_ceiling": False, "method_params": {args.method: point}})
        scores, per_class = seed_scores(folder, args.method)
        record["points"].append({"params": point, "dice": scores, "per_class": per_class})
        print(line(f"{args.method} {point}", scores, per_class), flush=True)
    (out / "sweep.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
