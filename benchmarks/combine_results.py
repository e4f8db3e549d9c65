"""Combine the results.csv of several launches of one benchmark into one table.

A benchmark folder aggregates only the runs trained in it. When the seeds of a table were
trained in different folders (with the same config and noisy labels), this script reads their
results.csv files, keeps the last file's rows where two files hold the same (level, method, seed,
case, target), and writes the benchmark's tables (mean ± std over seeds, per structure, paired
with `supervised`) with the file each run came from.

    python benchmarks/combine_results.py --config configs/acdc_cpu.yaml --out DIR \
        --classes background,organ [--drop l2b@A.csv] A.csv B.csv ...

`--drop METHOD@FILE` (repeatable) leaves out METHOD's rows of FILE, e.g. runs of a method whose
default has changed since FILE was written. Writes DIR/results.csv (with a `source` column) and
DIR/summary.md.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

from noisyseg.benchmark.spec import CLEAN_CEILING, load_benchmark
from noisyseg.benchmark.summary import CSV_COLUMNS, aggregate, level_table, paired_table, structure_table
from noisyseg.runinfo import package_versions

CLEAN_TITLE_IN_CSV = "supervised (clean labels)"


def read_rows(paths: list[Path], drop: set[tuple[str, str]] = frozenset()) -> dict[tuple, dict]:
    """{(level, method key, seed, case, target): row} over the files, later files winning;
    `drop` holds (method, file path as given) pairs whose rows are left out."""
    rows: dict[tuple, dict] = {}
    for path in paths:
        left_out = {m for m, f in drop if f == str(path)}
        with path.open(newline="") as fh:
            for r in csv.DictReader(fh):
                if r["method"] in left_out:
                    continue
                method = CLEAN_CEILING if r["method"] == CLEAN_TITLE_IN_CSV else r["method"]
                row = {k: r[k] for k in ("case", "target")}
                row.update({m: float(r[m]) if r[m] not in ("", "nan") else math.nan
                            for m in ("dice", "iou", "hd95", "asd")})
                rows[(r["level"], method, int(r["seed"]), r["case"], r["target"])] = {**row, "source": str(path)}
    return rows


def records_of(rows: dict[tuple, dict]) -> list[dict]:
    """Benchmark records {level, method, seed, rows, source} grouped from `read_rows`."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for (level, method, seed, _, _), row in rows.items():
        grouped[(level, method, seed)].append(row)
    return [{"level": lv, "method": m, "seed": s, "rows": rs, "source": sorted({r["source"] for r in rs})}
            for (lv, m, s), rs in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the benchmark config the runs used")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--classes", required=True, help="class names, background first, comma-separated")
    ap.add_argument("--pixels", action="store_true", help="the data has no spacing: HD95 / ASD in pixels")
    ap.add_argument("--drop", action="append", default=[], metavar="METHOD@FILE",
                    help="leave out METHOD's rows of FILE (repeatable)")
    ap.add_argument("csvs", type=Path, nargs="+")
    args = ap.parse_args()
    given = {str(p) for p in args.csvs}
    drop = {tuple(d.split("@", 1)) for d in args.drop}
    if any(len(d) != 2 or d[1] not in given for d in drop):
        ap.error(f"--drop needs METHOD@FILE with FILE one of the CSVs given: {args.drop}")
    spec, _ = load_benchmark(args.config, data="unused")
    records = records_of(read_rows(args.csvs, drop))
    spec = spec.model_copy(update={"seeds": sorted({r["seed"] for r in records})})
    classes = args.classes.split(",")
    structures = classes[1:]
    stats = aggregate(records, ["mean"], classes)
    per_structure = aggregate(records, structures, classes)
    ceiling = stats.get("clean", {}).get(CLEAN_CEILING)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS + ["source"])
        w.writeheader()
        for rec in records:
            title = CLEAN_TITLE_IN_CSV if rec["method"] == CLEAN_CEILING else rec["method"]
            for r in rec["rows"]:
                w.writerow({"level": rec["level"], "method": title, "seed": rec["seed"], **r})
    dropped = "".join(f" Left out: {m} of {f}." for m, f in sorted(drop))
    parts = [f"# {spec.name}", "", f"Combined from {len(args.csvs)} results.csv files; mean ± std over seeds "
             f"(± over test cases where a method has one seed); Dice and IoU in %.{dropped}", ""]
    for level in (lv for lv in stats if lv != "clean"):
        table = level_table(stats[level], spec, level, ["mean"], ceiling)
        parts += [f"## noise level {level}", "", table.replace("(mm)", "(px)") if args.pixels else table, "",
                  "Per structure (Dice %, HD95):", "",
                  structure_table(per_structure[level], per_structure.get("clean", {}).get(CLEAN_CEILING),
                                  spec, structures), "",
                  "Paired with `supervised` on the same noisy labels, seeds and test cases:", "",
                  paired_table(records, spec, level, classes), ""]
    parts += ["## Runs and their files", ""]
    parts += [f"- {r['level']} / {r['method']} / seed {r['seed']}: {', '.join(r['source'])}" for r in records]
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    parts += ["", f"Combined with {versions}.", ""]
    (args.out / "summary.md").write_text("\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
