"""Does a trained run memorise its noisy training labels? Its prediction on its own training
cases against their given (noisy) and clean labels, grouped by the noise each case got.

For every case outside the test split of a benchmark's noisy copy (the runs' training and
validation cases; the copy keeps the clean labels beside the noisy ones and says in
`noise_report.csv` what was done to each case) and every run given, the Dice of the prediction's
foreground (any class > 0) against the clean and against the given foreground,
and the predicted foreground volume over the clean one. A run that memorises the noise agrees
with the given labels of the corrupted cases more than a run trained on clean labels does.

    python benchmarks/training_fit.py --data BENCH/data/noisy_0.75 RUN [RUN ...] \
        [--checkpoint best] [--json out.json]

Prints one line per case and the median of each group of cases (the noise operation: `erode`,
`dilate`, ..., else the protocol such as `sfda`; `none` for the cases left clean) per run.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import numpy as np

from noisyseg import api
from noisyseg.errors import NoisySegError
from noisyseg.metrics.overlap import dice
from noisyseg.runinfo import package_versions


def fit_row(pred: np.ndarray, given: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Foreground (> 0) Dice of `pred` against the clean and the given labels (`metrics.overlap.dice`:
    NaN when both are empty), and the predicted over the clean foreground volume. All label maps
    (*S) of the same shape."""
    p, g, c = pred > 0, given > 0, clean > 0
    return {"dice_clean": dice(p, c), "dice_given": dice(p, g),
            "volume_ratio": float(p.sum() / c.sum()) if c.any() else float("nan")}


def noise_ops(report: Path) -> dict[str, str]:
    """Case id → the noise operation of `noise_report.csv`: the morphological op ('erode', ...),
    else the protocol ('sfda', ...; 'none' for a case left clean)."""
    with report.open(newline="") as f:
        ops = {r["case"]: json.loads(r["operation"]) for r in csv.DictReader(f)}
    return {case: op.get("op") or op.get("protocol", "none") for case, op in ops.items()}


def group_medians(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Median of each metric of `rows` (dicts with 'op' and the metrics) per value of 'op'."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["op"], []).append(r)
    return {op: {"cases": len(g), **{m: statistics.median(r[m] for r in g)
                                     for m in ("dice_clean", "dice_given", "volume_ratio")}}
            for op, g in sorted(groups.items())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders trained on --data")
    ap.add_argument("--data", required=True, help="the benchmark's noisy copy (clean labels and noise_report.csv)")
    ap.add_argument("--checkpoint", default="best", choices=api.CHECKPOINTS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    data = Path(args.data)
    report = data / "noise_report.csv"
    if not report.is_file():
        raise SystemExit(f"{report}: not found (give a benchmark's noisy copy)")
    ops = noise_ops(report)
    try:
        refs = api.split_cases(api.open_data(data), "train")
        models = {run: api.load_run(run, checkpoint=args.checkpoint) for run in args.runs}
    except NoisySegError as exc:
        raise SystemExit(str(exc)) from None
    rows: dict[str, list[dict]] = {run: [] for run in args.runs}
    for ref in refs:
        case = ref.load()
        if case.clean_label is None:
            raise SystemExit(f"{data}: case {case.id} has no clean label (give a benchmark's noisy copy)")
        op = ops.get(case.id, "none")
        line = [case.id, op]
        for run, (method, info, cfg) in models.items():
            pred = api.predict_image(method, case.image, info, cfg, case.spacing).argmax(0)
            r = {"case": case.id, "op": op, **fit_row(pred, case.label, case.clean_label)}
            rows[run].append(r)
            line.append(f"{r['dice_clean']:.3f}/{r['dice_given']:.3f}/{r['volume_ratio']:.2f}")
        print(" ".join(line), flush=True)
    print("per run and noise operation, medians of Dice vs clean / Dice vs given / predicted over clean volume:")
    summary = {run: group_medians(r) for run, r in rows.items()}
    for run, groups in summary.items():
        print(run)
        for op, g in groups.items():
            print(f"  {op} ({g['cases']} cases): {g['dice_clean']:.3f} / {g['dice_given']:.3f} / {g['volume_ratio']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": str(data), "checkpoint": args.checkpoint, "cases": rows,
                                               "medians": summary, "versions": package_versions()}, indent=2))


if __name__ == "__main__":
    main()
