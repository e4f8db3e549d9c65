"""Table and figures of `noisyseg demo` (and other method comparisons on one dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .figures import _plt, plot_metric_bars, plot_overlays, read_log, save_figure
from .tables import _cell, markdown_table

CLEAN_TITLE = "supervised (clean labels)"
"""How `supervised` trained on the clean labels (the ceiling) is titled in tables and figures."""
METRIC_TITLES = {"dice": "Dice (%)", "iou": "IoU (%)", "hd95": "HD95 (mm)", "asd": "ASD (mm)"}


def run_dir_name(title: str) -> str:
    """A folder name for a run title such as 'supervised (clean labels)'."""
    return title.replace(" ", "_").replace("(", "").replace(")", "")


def class_mean(metrics: dict, metric: str) -> tuple[float, float]:
    """Mean over foreground classes of a metric's per-class means and stds."""
    cols = [k for k in metrics if k.startswith(metric + "_") and k[len(metric) + 1:].isdigit()]
    means = [metrics[c]["mean"] for c in cols if metrics[c]["mean"] is not None]
    stds = [metrics[c]["std"] for c in cols if metrics[c]["std"] is not None]
    if not means:
        return float("nan"), float("nan")
    return float(np.mean(means)), float(np.mean(stds)) if stds else float("nan")


def demo_table(summary: dict[str, dict]) -> str:
    """Markdown table: one row per run, Dice/IoU in %, HD95/ASD in mm (mean ± std over test
    cases, averaged over foreground classes), and the training time."""
    rows = []
    for name, res in summary.items():
        row = {"method": name}
        for m, title in METRIC_TITLES.items():
            mean, std = class_mean(res["metrics"], m)
            scale = 100.0 if m in ("dice", "iou") else 1.0
            row[title] = _cell(mean, std, 2, scale)
        row["train (s)"] = f"{res.get('train_seconds', float('nan')):.0f}"
        rows.append(row)
    return markdown_table(rows, ["method", *METRIC_TITLES.values(), "train (s)"])


def _load_labels_of(folder: Path, cid: str) -> np.ndarray:
    from ..io import list_case_files, case_id, read_file

    for f in list_case_files(folder):
        if case_id(f) == cid:
            return np.asarray(read_file(f).array)
    raise FileNotFoundError(f"{folder}: no file for {cid}")


def demo_figures(out: Path, runs: list[tuple[str, str, Path]], data_dir: Path, noisy_dir: Path,
                 n_cases: int = 3) -> list[Path]:
    """Overlays (test: image, clean, each run's prediction; train: clean vs noisy), Dice bars,
    and the validation curves of all runs on one plot."""
    import json

    from ..data import open_dataset

    figs = out / "figures"
    clean_ds = open_dataset(data_dir)
    noisy_ds = open_dataset(noisy_dir)
    k = clean_ds.num_classes
    written = []
    rows = []
    for ref in clean_ds.test[:n_cases]:
        case = ref.load()
        maps = {"clean": case.label}
        for title, _, _ in runs:
            run_dir = out / "runs" / run_dir_name(title)
            maps[title.replace(" (clean labels)", "\n(clean labels)")] = _load_labels_of(run_dir / "pred_test", case.id)
        rows.append((case.id, case.image, maps))
    written.append(plot_overlays(rows, figs / "test_predictions.png", k))
    rows = []
    for ref in noisy_ds.train[:n_cases]:
        case = ref.load()
        rows.append((case.id, case.image, {"clean label": case.clean_label, "noisy label": case.label}))
    written.append(plot_overlays(rows, figs / "training_labels_clean_vs_noisy.png", k))

    names, means, stds = [], [], []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for title, _, _ in runs:
        run_dir = out / "runs" / run_dir_name(title)
        summ = json.loads((run_dir / "eval_test" / "summary.json").read_text())
        m, s = class_mean(summ["metrics"], "dice")
        names.append(title)
        means.append(m)
        stds.append(s)
        log = read_log(run_dir / "train_log.csv")
        key = "val/dice_clean" if "val/dice_clean" in log else "val/dice"
        if key in log:
            ok = np.isfinite(log[key])
            ax.plot(log["step"][ok], log[key][ok], marker=".", label=title)
    ax.set_xlabel("step")
    ax.set_ylabel("validation Dice (clean labels)")
    ax.legend(fontsize=7)
    written.append(save_figure(fig, figs / "validation_curves.png"))
    written.append(plot_metric_bars(names, means, stds, figs / "test_dice.png", "test Dice (clean labels)"))
    return written
