"""`noisyseg audit`: score a dataset's training labels with a trained run.

Writes into `out` (created only after every input was read and checked; built in a hidden
sibling folder and renamed into place):

    maps/<case>.nii.gz   per-voxel probability that the given label is wrong, float32 with the
                         input's affine (opens over the image in ITK-SNAP / 3D Slicer);
                         maps/<case>.png for 2D image inputs (8-bit, 255 = 1.0)
    cases.csv            one row per training case, worst first: rank, case, error_score,
                         quality (= 1 − error_score), suspected_fraction [, true noise]
    summary.json         settings, the signal used, and (clean labels known) the detection
                         metrics: voxel AUROC / average precision of the map against
                         given != clean, Spearman of case scores with 1 − Dice and changed fraction
    report.md            the ranking, the metrics and figures/worst_cases.png

Signals, by what the run's method offers (`Method.label_thresholds`, `Method.label_weights`):
a method with its own per-class thresholds T (CLCS) scores voxels with its predicted
probabilities (CLCS: both branches' mean) against them (`threshold`, suspected ⇔ p̄(ỹ) < T(ỹ));
if they are all zero (still warming up) the confident-learning class means are used instead.
A method with label weights (MetaDCSeg) scores 2D cases by where its meta weights move trust
to the pseudo-label, against a trusted case; other runs use `self_confidence`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.case import check_compatible
from ..errors import ConfigError, DataError, unknown_name
from ..io import atomic_dir, file_kind, label_file_name, write_image
from .metrics import auroc, average_precision, spearman
from .scores import (
    SUSPECT_LEVEL,
    VOXEL_METHODS,
    check_case_score,
    class_thresholds,
    label_quality,
)
from .scores import case_score as score_case

AUDIT_METHODS = ("auto",) + VOXEL_METHODS


def _signal(model, method: str, labels, probs) -> tuple[str, np.ndarray | None, str]:
    """(voxel method, thresholds or None, description) for a run and the requested method."""
    run_method = getattr(model, "name", "")
    own = model.label_thresholds() if hasattr(model, "label_thresholds") else None
    if method == "auto":  # a continuous score ranks every voxel; a threshold decision does not
        method = "self_confidence"
    if method != "threshold":
        return method, None, f"{method} on the {run_method or 'run'}'s predicted probabilities"
    if own is not None:
        thr = own.detach().cpu().numpy().astype(np.float64)
        if np.any(thr > 0):
            return method, thr, f"{run_method}'s predicted probabilities with its learnt class thresholds"
    thr = class_thresholds(labels, probs)
    return method, thr, "threshold with confident-learning class thresholds (mean p(c) over voxels labelled c)"


def _meta_case(method: str, ds, info: dict, cfg, cases: list):
    """The trusted case a MetaDCSeg run is audited against (taken from the loaded training
    `cases` when it is one of them), or None when its meta weights do not apply (another
    method asked for, no trusted case, not whole-image 2D data, or a run that resamples its
    inputs)."""
    from ..nets import downsample_factor

    if (method != "auto" or not ds.trusted_ids or info["train_dims"] != 2 or info["data_dims"] != 2
            or cfg.data.target_spacing is not None):
        return None
    trusted = ds.trusted_ids[0]
    case = next((c for c in cases if c.id == trusted), None) or ds.case(trusted).load()
    f = downsample_factor(cfg.net)
    if any(n % f for n in case.image.shape[1:]):
        return None
    return case


def meta_weight_scores(model, case, meta) -> np.ndarray:
    """Per-pixel error score β/(α+β) from a run's label weights (`Method.label_weights`:
    MetaDCSeg's exact meta weights) of the given label (α) and the pseudo-label (β) of one whole
    2D case, with a trusted case as the meta batch; 0.5 where neither label gets weight (no
    evidence), 0 where both labels agree and are trusted."""
    import torch

    device = next(model.parameters()).device

    def batch(c, use_clean: bool):
        lab = c.clean_label if use_clean and c.clean_label is not None else c.label
        valid = torch.from_numpy(lab[None] >= 0).to(device)
        return (torch.from_numpy(c.image[None]).to(device), torch.from_numpy(np.maximum(lab[None], 0)).to(device),
                None if bool(valid.all()) else valid)

    image, label, valid = batch(case, False)
    meta_image, meta_label, meta_valid = batch(meta, True)
    mw = model.label_weights(image, label, meta_image, meta_label, valid=valid, meta_valid=meta_valid)
    a, b = mw.given[0].double(), mw.pseudo[0].double()
    total = a + b
    agree = mw.pseudo_label[0] == label[0]
    score = torch.where(total > 0, b / total.clamp_min(1e-300), torch.full_like(total, 0.5))
    score = torch.where(agree & (total > 0), torch.zeros_like(score), score)
    if valid is not None:
        score = torch.where(valid[0], score, torch.full_like(score, float("nan")))
    return score.float().cpu().numpy()


def audit(*, run: Path | str, data: Path | str, out: Path | str, method: str = "auto",
          case_score: str = "suspected_fraction", top_percent: float = 1.0, checkpoint: str = "best",
          device: str = "auto", n_figures: int = 4, progress: bool = True) -> dict:
    """Score the training labels of `data` with the trained `run`; returns the summary dict
    (also written to out/summary.json). See the module doc for the outputs."""
    from ..api import load_run, open_data, predict_image
    from ..noise.report import noise_stats

    if method not in AUDIT_METHODS:
        raise unknown_name("audit method", method, AUDIT_METHODS)
    check_case_score(case_score, top_percent)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output folder exists and is not empty")
    model, info, cfg = load_run(run, checkpoint, device)
    ds = open_data(data)
    check_compatible(f"run {run}", info["class_names"], len(info["modalities"]), int(info["data_dims"]), ds,
                     match_names=True)
    if not ds.train:
        raise DataError(f"{ds.root}: no training cases to audit")
    cases = []
    for ref in ds.train:
        c = ref.load()
        if c.label is None:
            raise DataError(f"{c.image_path}: training case '{c.id}' has no label")
        cases.append(c)

    meta = _meta_case(method, ds, info, cfg, cases) if model.has_label_weights() else None
    if meta is not None:
        vmethod, thr = "meta_weights", None
        signal = (f"{model.name}'s meta weights: share of the per-pixel weight moved from the given label to the "
                  f"pseudo-label, against trusted case '{meta.id}'")
        voxel = [meta_weight_scores(model, c, meta) for c in tqdm(cases, desc="audit", disable=not progress)]
        case_scores = np.array([score_case(v, case_score, top_percent) for v in voxel])
    else:
        probs = [predict_image(model, c.image, info, cfg, c.spacing).astype(np.float32)
                 for c in tqdm(cases, desc="audit", disable=not progress)]
        labels = [c.label for c in cases]
        vmethod, thr, signal = _signal(model, method, labels, probs)
        case_scores, voxel = label_quality(labels, probs, method=vmethod, case_score_method=case_score,
                                           top_percent=top_percent, thresholds=thr)
        del probs
    k = len(ds.class_names)
    rows = []
    for c, s, v in zip(cases, case_scores, voxel):
        row = {"case": c.id, "error_score": float(s), "quality": 1.0 - float(s),
               "suspected_fraction": score_case(v, "suspected_fraction")}
        if c.clean_label is not None:
            st = noise_stats(c.clean_label, c.label, k)
            row.update(true_noise_level=st["noise_level"], true_changed_fraction=st["changed_fraction"])
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["error_score"], rows[i]["case"]))

    summary: dict = {"run": str(run), "data": str(ds.root), "checkpoint": checkpoint, "run_method": model.name,
                     "method": vmethod, "signal": signal, "case_score": case_score, "top_percent": top_percent,
                     "thresholds": None if thr is None else [float(t) for t in thr],
                     "suspect_level": SUSPECT_LEVEL, "n_cases": len(cases),
                     "ranking": [rows[i]["case"] for i in order]}
    known = [i for i, c in enumerate(cases) if c.clean_label is not None]
    if known:
        scored = np.concatenate([~np.isnan(voxel[i]).reshape(-1) for i in known])  # ignored voxels: no score
        truth = np.concatenate([(cases[i].label != cases[i].clean_label).reshape(-1) for i in known])[scored]
        pooled = np.concatenate([voxel[i].reshape(-1) for i in known])[scored]
        summary["detection"] = {
            "n_cases_with_clean_labels": len(known),
            "error_voxel_fraction": float(truth.mean()),
            "voxel_auroc": auroc(truth, pooled),
            "voxel_average_precision": average_precision(truth, pooled),
            "spearman_vs_1_minus_dice": spearman([case_scores[i] for i in known],
                                                 [rows[i]["true_noise_level"] for i in known]),
            "spearman_vs_changed_fraction": spearman([case_scores[i] for i in known],
                                                     [rows[i]["true_changed_fraction"] for i in known]),
        }

    with atomic_dir(out) as tmp:
        for c, v in zip(cases, voxel):
            path = tmp / "maps" / label_file_name(c.id, c.image_path)
            png = file_kind(path) == "image2d"  # 8-bit: the score in [0, 1] scaled to 0..255
            write_image(path, np.round(np.nan_to_num(np.clip(v, 0, 1)) * 255).astype(np.uint8) if png else v,
                        affine=c.affine)
        with (tmp / "cases.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["rank"] + list(rows[0].keys()))
            w.writeheader()
            for r, i in enumerate(order, start=1):
                w.writerow({"rank": r, **rows[i]})
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        worst = order[: max(0, n_figures)]
        if worst:
            from ..report.figures import plot_overlays

            fig_rows = []
            for i in worst:
                maps = {"given label": cases[i].label, "suspected errors": (voxel[i] > SUSPECT_LEVEL).astype(np.int64)}
                if cases[i].clean_label is not None:
                    maps["clean label"] = cases[i].clean_label
                fig_rows.append((cases[i].id, cases[i].image, maps))
            plot_overlays(fig_rows, tmp / "figures" / "worst_cases.png", max(k, 2))
        (tmp / "report.md").write_text(_report(summary, rows, order, bool(worst)))
    return summary


def _report(summary: dict, rows: list[dict], order: list[int], figure: bool) -> str:
    lines = ["# Label-quality audit", "",
             f"- run: `{summary['run']}` ({summary['run_method']}, checkpoint {summary['checkpoint']})",
             f"- data: `{summary['data']}`, {summary['n_cases']} training cases",
             f"- signal: {summary['signal']}",
             (f"- case score: {summary['case_score']} (higher = worse; voxels suspected where the error "
              f"probability > {summary['suspect_level']})"), ""]
    det = summary.get("detection")
    if det:
        lines += ["## Detection against the known clean labels", "",
                  "| metric | value |", "|---|---|",
                  f"| voxel AUROC | {det['voxel_auroc']:.4f} |",
                  f"| voxel average precision | {det['voxel_average_precision']:.4f} |",
                  f"| error-voxel base rate | {det['error_voxel_fraction']:.4f} |",
                  f"| Spearman(case score, 1 − Dice) | {det['spearman_vs_1_minus_dice']:.4f} |",
                  f"| Spearman(case score, changed fraction) | {det['spearman_vs_changed_fraction']:.4f} |", ""]
    has_truth = "true_noise_level" in rows[0]
    head = "| rank | case | error score | suspected fraction |" + (" true 1 − Dice |" if has_truth else "")
    lines += ["## Ranking (worst first)", "", head, "|---|---|---|---|" + ("---|" if has_truth else "")]
    for r, i in enumerate(order, start=1):
        row = rows[i]
        line = f"| {r} | {row['case']} | {row['error_score']:.4f} | {row['suspected_fraction']:.4f} |"
        if has_truth:
            tn = row.get("true_noise_level")
            line += f" {tn:.4f} |" if tn is not None else " |"
        lines.append(line)
    if figure:
        lines += ["", "## Worst cases", "", "Image, given label, suspected errors (and the clean label when known):",
                  "", "![worst cases](figures/worst_cases.png)"]
    lines += ["", "Per-voxel error maps: `maps/` (open over the image in ITK-SNAP or 3D Slicer).", ""]
    return "\n".join(lines)
