"""Tables and figures of a benchmark: results.csv, summary.md / summary.json, figures/.

Aggregation: for each run (level, method, seed) a metric is first averaged over the test
cases (NaN, i.e. a class absent from both prediction and truth, is left out), then over
the foreground classes (or, for datasets with regions such as BraTS, reported per region).
The table shows mean ± std of that number over seeds (sample std); with a single seed the
± is the std over test cases instead, and the summary says so.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..data.case import Case, Dataset
from ..runinfo import package_versions
from ..io import atomic_path, label_file_name, read_file
from ..report.demo_report import METRIC_TITLES
from ..report.tables import _cell, markdown_table
from .runkey import RunKey
from .spec import CLEAN_CEILING, BenchmarkSpec, run_title

METRICS = METRIC_TITLES  # metric → column title
HIGHER_IS_BETTER = {"dice": True, "iou": True, "hd95": False, "asd": False}
CSV_COLUMNS = ["level", "method", "seed", "case", "target", "dice", "iou", "hd95", "asd"]


def table_targets(ds: Dataset) -> list[str]:
    """Columns groups of the table: the regions (BraTS WT/TC/ET) or 'mean' over classes."""
    return list(ds.regions) if ds.regions else ["mean"]


def case_means(rows: list[dict], targets: list[str], metric: str) -> dict[str, float]:
    """{case: `metric` averaged over the `targets` (classes or regions) where it is defined}."""
    per_case: dict[str, list[float]] = defaultdict(list)
    wanted = set(targets)
    for r in rows:
        v = r[metric]
        if r["target"] in wanted and v is not None and math.isfinite(v):
            per_case[r["case"]].append(v)
    return {c: float(np.mean(v)) for c, v in per_case.items()}


def run_scores(rows: list[dict], targets: list[str], class_names: list[str]) -> dict[str, dict[str, tuple]]:
    """{target: {metric: (value over cases, std over cases)}} for one run's rows."""
    present = {r["target"] for r in rows}
    out: dict[str, dict[str, tuple]] = {}
    fg = [n for n in class_names[1:] if n in present]
    for t in targets:
        out[t] = {}
        members = fg if t == "mean" else [t]
        for m in METRICS:
            vals = np.array(list(case_means(rows, members, m).values()), dtype=float)
            out[t][m] = (float(vals.mean()), float(vals.std())) if vals.size else (math.nan, math.nan)
    return out


def aggregate(records: list[dict], targets: list[str], class_names: list[str]) -> dict:
    """{level: {method: {target: {metric: (mean, std, n_seeds)}}}} over seeds."""
    grouped: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        grouped[rec["level"]][rec["method"]].append(run_scores(rec["rows"], targets, class_names))
    out: dict = {}
    for level, methods in grouped.items():
        out[level] = {}
        for method, runs in methods.items():
            out[level][method] = {}
            for t in targets:
                out[level][method][t] = {}
                for m in METRICS:
                    vals = np.array([r[t][m][0] for r in runs], dtype=float)
                    finite = np.flatnonzero(np.isfinite(vals))
                    vals = vals[finite]
                    if vals.size == 0:
                        stat = (math.nan, math.nan, 0)
                    elif vals.size == 1:  # one seed with a value: its std over cases
                        stat = (float(vals[0]), runs[finite[0]][t][m][1], 1)
                    else:
                        stat = (float(vals.mean()), float(vals.std(ddof=1)), int(vals.size))
                    out[level][method][t][m] = stat
    return out


def structure_table(stats: dict, ceiling: dict | None, spec: BenchmarkSpec, structures: list[str]) -> str:
    """Dice and HD95 of each structure (class) per method, mean ± std as in the main table."""
    header = ["method"] + [f"{m} {t}" for t in structures for m in ("Dice", "HD95")]
    rows = []
    lines = ([(CLEAN_CEILING, ceiling)] if ceiling else []) + [(m, stats[m]) for m in spec.methods if m in stats]
    for meth, st in lines:
        row = {"method": run_title(meth)}
        for t in structures:
            row[f"Dice {t}"] = _cell(st[t]["dice"][0], st[t]["dice"][1], 1, 100.0)
            row[f"HD95 {t}"] = _cell(st[t]["hd95"][0], st[t]["hd95"][1], 1, 1.0)
        rows.append(row)
    return markdown_table(rows, header)


def _column(target: str, metric: str, targets: list[str]) -> str:
    return METRICS[metric] if targets == ["mean"] else f"{METRICS[metric].split(' ')[0]} {target}"


def level_table(stats: dict, spec: BenchmarkSpec, level: str, targets: list[str],
                ceiling: dict | None) -> str:
    """The papers' layout: one row per method, Dice / IoU / HD95 / ASD per target, best per
    column in bold (among the methods trained on noisy labels), published numbers beside."""
    methods = [m for m in spec.methods if m in stats]
    cols = [(t, m) for t in targets for m in METRICS]
    best: dict[tuple, float] = {}
    for t, m in cols:
        vals = [stats[meth][t][m][0] for meth in methods if math.isfinite(stats[meth][t][m][0])]
        if vals:
            best[(t, m)] = max(vals) if HIGHER_IS_BETTER[m] else min(vals)
    reported = spec.reported.get(level, {})
    rep_keys = sorted({k for r in reported.values() for k in r}, key=lambda k: (k.split("_")[0] not in METRICS, k))
    header = ["method"] + [_column(t, m, targets) for t, m in cols] + [f"paper {k}" for k in rep_keys]
    rows = []
    lines: list[tuple[str, dict]] = ([(CLEAN_CEILING, ceiling)] if ceiling else []) + [(m, stats[m]) for m in methods]
    for meth, st in lines:
        row = {"method": run_title(meth)}
        for (t, m), col in zip(cols, header[1:]):
            mean, std, _ = st[t][m]
            scale = 100.0 if m in ("dice", "iou") else 1.0
            cell = _cell(mean, std, 2, scale)
            if meth != CLEAN_CEILING and (t, m) in best and math.isclose(mean, best[(t, m)]):
                cell = f"**{cell}**"
            row[col] = cell
        for k in rep_keys:
            v = reported.get(meth, {}).get(k)
            row[f"paper {k}"] = "" if v is None else f"{v:.2f}"
        rows.append(row)
    return markdown_table(rows, header)


def paired_table(records: list[dict], spec: BenchmarkSpec, level: str, class_names: list[str]) -> str:
    """Each method against `supervised` on the same noisy labels, seeds and test cases: the mean
    over seeds of the per-seed Dice difference ± its std over seeds, the (seed, case) pairs won,
    and the share of the noise gap recovered, (method − supervised) / (clean − supervised)."""
    by = {(r["level"], r["method"], r["seed"]): case_means(r["rows"], class_names[1:], "dice") for r in records}

    def run_mean(key) -> float:
        return float(np.mean(list(by[key].values()))) if by.get(key) else math.nan

    rows = []
    for meth in (m for m in spec.methods if m != "supervised"):
        seeds = [s for s in spec.seeds if (level, meth, s) in by and (level, "supervised", s) in by]
        if not seeds:
            continue
        diffs = np.array([run_mean((level, meth, s)) - run_mean((level, "supervised", s)) for s in seeds])
        won = total = 0
        for s in seeds:
            a, b = by[(level, meth, s)], by[(level, "supervised", s)]
            for case in set(a) & set(b):
                won, total = won + int(a[case] > b[case]), total + 1
        gaps = [run_mean(("clean", CLEAN_CEILING, s)) - run_mean((level, "supervised", s)) for s in seeds]
        rec = np.nanmean([d / g if g > 0 else math.nan for d, g in zip(diffs, gaps)]) if any(
            g > 0 for g in gaps) else math.nan
        std = f" ± {100 * diffs.std(ddof=1):.2f}" if len(diffs) > 1 else ""
        rows.append({"method": meth, "Δ Dice vs supervised (%)": f"{100 * diffs.mean():+.2f}{std}",
                     "cases won": f"{won}/{total}", "noise gap recovered": "" if math.isnan(rec) else f"{rec:+.2f}"})
    if not rows:
        return ""
    return markdown_table(rows, ["method", "Δ Dice vs supervised (%)", "cases won", "noise gap recovered"])


def _load_pred(path: Path, label_values: list[int]) -> np.ndarray:
    arr = np.asarray(read_file(path).array).astype(np.int64)
    return np.searchsorted(np.asarray(label_values), arr)


def write_figures(out: Path, spec: BenchmarkSpec, stats: dict, ds: Dataset, noisy_dirs: dict[str, Path],
                  test_cases: list[Case]) -> list[Path]:
    """Dice bars per level, Dice against noise level, overlay grids of test predictions and
    of clean vs noisy training labels."""
    from ..data import open_dataset
    from ..report.figures import _plt, plot_metric_bars, plot_overlays, save_figure

    figs = out / "figures"
    written = []
    t0 = table_targets(ds)[0]
    ceiling = stats.get("clean", {}).get(CLEAN_CEILING)
    for level, st in stats.items():
        if level == "clean":
            continue
        entries = ([(CLEAN_CEILING, ceiling)] if ceiling else []) + [(m, st[m]) for m in spec.methods if m in st]
        written.append(plot_metric_bars([run_title(m) for m, _ in entries],
                                        [100 * s[t0]["dice"][0] for _, s in entries],
                                        [100 * s[t0]["dice"][1] for _, s in entries],
                                        figs / f"dice_{level}.png", f"test Dice (%), noise {level}"))
    numeric = sorted((float(lv), lv) for lv in stats if lv not in ("clean", "all"))
    if len(numeric) >= 2:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for m in spec.methods:
            pts = [(x, stats[lv][m][t0]["dice"]) for x, lv in numeric if m in stats[lv]]
            if pts:
                ax.errorbar([p[0] for p in pts], [100 * p[1][0] for p in pts], yerr=[100 * p[1][1] for p in pts],
                            marker="o", capsize=3, label=m)
        ax.set_xlabel("noise level")
        ax.set_ylabel("test Dice (%)")
        ax.legend(fontsize=7)
        written.append(save_figure(fig, figs / "dice_vs_level.png"))
    k = max(ds.num_classes, 2)
    shown = test_cases[: spec.overlay_slices]
    for level in noisy_dirs:
        if shown:
            rows = []
            for case in shown:
                maps = {"clean label": case.label}
                keys = ([RunKey("clean", CLEAN_CEILING, spec.seeds[0])] if ceiling else []) + \
                    [RunKey(level, m, spec.seeds[0]) for m in spec.methods]
                for key in keys:
                    p = key.folder(out) / "pred_test" / label_file_name(case.id, case.image_path)
                    if p.is_file():
                        maps[run_title(key.method).replace(" (", "\n(")] = _load_pred(p, ds.label_values)
                rows.append((case.id, case.image, maps))
            written.append(plot_overlays(rows, figs / f"test_overlays_{level}.png", k))
        noisy = open_dataset(noisy_dirs[level])
        rows = []
        for ref in noisy.train[: spec.overlay_slices]:
            c = ref.load()
            if c.clean_label is not None:
                rows.append((c.id, c.image, {"clean label": c.clean_label, "noisy label": c.label}))
        if rows:
            written.append(plot_overlays(rows, figs / f"training_labels_{level}.png", k))
    return written


def write_summary(out: Path, spec: BenchmarkSpec, records: list[dict], ds: Dataset, clean_dir: Path,
                  noisy_dirs: dict[str, Path], test_cases: list[Case], seconds: float) -> tuple[str, list[dict]]:
    """Write results.csv, summary.md, summary.json and figures; returns (Markdown tables, csv rows).

    `seconds` is this invocation's wall time; summary.json lists the runs an earlier
    invocation finished under `reused_runs` (their training time stays in `train_seconds`).
    """
    rows = [{"level": rec["level"], "method": run_title(rec["method"]), "seed": rec["seed"], **r}
            for rec in records for r in rec["rows"]]
    with atomic_path(out / "results.csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    targets = table_targets(ds)
    stats = aggregate(records, targets, ds.class_names)
    ceiling = stats.get("clean", {}).get(CLEAN_CEILING)
    n_seeds = len(spec.seeds)
    spread = "mean ± std over seeds" if n_seeds > 1 else "mean ± std over test cases (one seed)"
    unit = "mm" if ds.spacing_known else "pixels (the data carries no voxel spacing)"
    parts = [f"# {spec.name}", "",
             f"- data: `{spec.data}` ({len(test_cases)} test cases), noise: `{spec.noise.protocol}`, "
             f"seeds: {spec.seeds}, metric convention: `{spec.convention}`, tested with each run's "
             f"`{spec.checkpoint}` checkpoint" + (" (selected on validation)" if spec.checkpoint == "best" else ""),
             f"- {spread}; Dice and IoU in %, HD95 and ASD in {unit}; best method per column in bold "
             "(among those trained on noisy labels)", ""]
    structures = ds.class_names[1:] if targets == ["mean"] and ds.num_classes > 2 else []
    per_structure = aggregate(records, structures, ds.class_names) if structures else {}
    tables = []
    for level in (lv for lv in stats if lv != "clean"):
        table = level_table(stats[level], spec, level, targets, ceiling)
        if not ds.spacing_known:
            table = table.replace("(mm)", "(px)")
        tables.append(f"noise level {level}\n\n{table}" if level != "all" else table)
        parts += [f"## noise level {level}" if level != "all" else "## results", "", table, ""]
        if structures:
            parts += ["Per structure (Dice %, HD95):", "",
                      structure_table(per_structure[level], per_structure.get("clean", {}).get(CLEAN_CEILING),
                                      spec, structures), ""]
        paired = paired_table(records, spec, level, ds.class_names)
        if paired:
            parts += ["Paired with `supervised` on the same noisy labels, seeds and test cases "
                      "(Dice averaged over the structures of each case):", "", paired, ""]
    if spec.reported_source:
        parts += [f"Published numbers (`paper ...` columns): {spec.reported_source}", ""]
    written = write_figures(out, spec, stats, ds, noisy_dirs, test_cases)
    parts += ["Figures: " + ", ".join(f"`{p.relative_to(out)}`" for p in written), ""]
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text("\n".join(parts))
    key = "{level}/{method}/seed{seed}".format
    summary = {"spec": spec.model_dump(mode="json"), "stats": stats, "seconds": seconds,
               "train_seconds": {key(**r): r["train_seconds"] for r in records},
               "reused_runs": [key(**r) for r in records if r.get("reused")],
               "clean_data": str(clean_dir), "noisy_data": {k: str(v) for k, v in noisy_dirs.items()},
               "versions": package_versions()}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=float))
    return "\n\n".join(tables), rows
