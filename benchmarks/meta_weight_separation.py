"""Do a meta-weighted method's look-ahead weights find the wrong labels? Measured on the
network of a run's checkpoint, against the clean labels a benchmark keeps beside the noisy ones.

For a few training batches (the run's own sampler, from the checkpoint's step on) it computes
the method's meta weights (`compute_weights`: α on the given label, raw w̃ʳ = η⟨∇ℓʳ_i, ∇L_meta⟩)
and reports per class of the given label: the share of right and of wrong labels with w̃ʳ > 0,
the mean α (in units of 1/M) on right and on wrong labels, and the AUROC of "this label is
wrong" ranked by −w̃ʳ (the meta weights' signal) and by 1 − p(ỹ) (the network's own loss, the
small-loss criterion of co-teaching and CLCS), each over the pixels of that class.

Where the given label ỹ and the pseudo-label ŷ disagree, the weights decide between them (the
larger raw weight, w̃ʳ or w̃ᵖ, wins); it also reports how often that choice is the clean label,
against always keeping ỹ, and how often it picks a foreground class.

    python benchmarks/meta_weight_separation.py --checkpoint RUN/checkpoints/last.pt \
        --data BENCH/data/noisy_0.75 --trusted BENCH/trusted.txt --batches 4 \
        [--params '{"meta_loss": "ce"}'] [--meta-batches 1] [--method metadcseg] [--json out.json]

The checkpoint's method must have `compute_weights` (metadcseg, l2b), unless `--method` names
one: its weights are then computed on the checkpoint's network (e.g. a `supervised` run's);
`--params` replaces the method parameters; `--meta-batches K` scores against K meta batches at once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from noisyseg.api import open_data
from noisyseg.audit import auroc
from noisyseg.config import RunConfig
from noisyseg.data.loader import step_batches, to_device
from noisyseg.engine.checkpoint import load_checkpoint
from noisyseg.engine.logger import TextLog
from noisyseg.engine.prepare import prepare_run
from noisyseg.engine.setup import build_method
from noisyseg.errors import DataError
from noisyseg.runinfo import package_versions


def class_rows(raw: torch.Tensor, alpha: torch.Tensor, p_given: torch.Tensor, label: torch.Tensor,
               clean: torch.Tensor, num_classes: int) -> list[dict]:
    """Per class k of the given label: raw > 0 shares, mean α·M on right / wrong labels and the
    scores (−raw, 1 − p) with the truth (label wrong) of its pixels. Inputs (N, *S)."""
    m = alpha.numel()
    rows = []
    for k in range(num_classes):
        given = label == k
        wrong = given & (clean != label)
        right = given & ~wrong
        rows.append({
            "right_pos": (raw[right] > 0).float().mean().item() if right.any() else float("nan"),
            "wrong_pos": (raw[wrong] > 0).float().mean().item() if wrong.any() else float("nan"),
            "alpha_right": (alpha[right].mean() * m).item() if right.any() else float("nan"),
            "alpha_wrong": (alpha[wrong].mean() * m).item() if wrong.any() else float("nan"),
            "truth": wrong[given].numpy(), "meta": (-raw[given]).numpy(), "loss": (1 - p_given[given]).numpy()})
    return rows


def decision_counts(raw_real: torch.Tensor, raw_pseudo: torch.Tensor, label: torch.Tensor,
                    pseudo: torch.Tensor, clean: torch.Tensor) -> dict[str, int]:
    """Over the pixels where the given label and the pseudo-label differ: how many there are,
    how often the larger raw weight picks the clean label, how often the given label is the clean
    one, and how often the pick is a foreground class (> 0). Inputs (N, *S)."""
    differ = label != pseudo
    pick = torch.where(raw_real > raw_pseudo, label, pseudo)[differ]
    return {"pixels": label.numel(), "differ": int(differ.sum()), "pick_clean": int((pick == clean[differ]).sum()),
            "given_clean": int((label == clean)[differ].sum()), "pick_fg": int((pick > 0).sum())}


def _as_method(state: dict, name: str, params: dict, dataset) -> None:
    """Turn a checkpoint of another method into `name`'s, in place: same network, the state
    `name` has beyond it (e.g. MetaDCSeg's centers) as a freshly built method has it."""
    state["config"]["method"] = {"name": name, "params": params}
    cfg = RunConfig.model_validate(state["config"])
    fresh = build_method(cfg, dataset.in_channels, dataset.num_classes, cfg.data.spatial_dims).state_dict()
    state["method"] = {**fresh, **{k: v for k, v in state["method"].items() if k in fresh}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="the benchmark's noisy copy (it keeps the clean labels)")
    ap.add_argument("--trusted", required=True, help="the benchmark's trusted.txt")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--meta-batches", type=int, default=1)
    ap.add_argument("--params", default=None, help="method parameters (JSON) replacing the run's")
    ap.add_argument("--method", default=None, help="score this method's weights on the checkpoint's network")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    try:
        state = load_checkpoint(Path(args.checkpoint))
    except DataError as exc:
        raise SystemExit(str(exc)) from None
    if "optimizer" not in state:
        raise SystemExit(f"{args.checkpoint}: weights only (best.pt); give a run's last.pt, which this script resumes")
    source = state["config"]["method"]["name"]
    try:
        dataset = open_data(args.data, args.trusted)
    except DataError as exc:
        raise SystemExit(str(exc)) from None
    if args.method:
        _as_method(state, args.method, json.loads(args.params or "{}"), dataset)
    elif args.params is not None:
        state["config"]["method"]["params"] = json.loads(args.params)
    cfg = RunConfig.model_validate(state["config"])
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "checkpoints").mkdir()
        torch.save(state, tmp / "checkpoints" / "last.pt")
        with TextLog() as text:
            run = prepare_run(cfg, dataset, tmp, resume=True, trusted_ids=None, progress=False, text=text)
    finally:
        shutil.rmtree(tmp)
    method, k = run.method, run.method.num_classes
    method.train()
    n_meta = args.meta_batches
    batches = step_batches(run.sampler, run.meta_sampler, rank=0, start=run.start,
                           max_steps=run.start + args.batches * n_meta, num_workers=0, pin_memory=False)
    per_class: list[list[dict]] = [[] for _ in range(k)]
    decisions: dict[str, int] = {}
    for _ in range(args.batches):
        group = [to_device(next(batches), torch.device("cpu")) for _ in range(n_meta)]  # labels as int64
        b = group[0]
        meta_image = torch.cat([g["meta_image"] for g in group])
        meta_label = torch.cat([g["meta_label"] for g in group])
        mw = method.compute_weights(b["image"], b["label"], meta_image, meta_label)
        with torch.no_grad():
            p = torch.softmax(method.net(b["image"]), 1).gather(1, b["label"].unsqueeze(1)).squeeze(1)
        for c, row in enumerate(class_rows(mw.raw_real, mw.alpha, p, b["label"], b["clean_label"], k)):
            per_class[c].append(row)
        counts = decision_counts(mw.raw_real, mw.raw_pseudo, b["label"], mw.pseudo_label, b["clean_label"])
        decisions = {key: decisions.get(key, 0) + v for key, v in counts.items()}
    warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of a class without wrong labels
    out = []
    print(f"step {run.start}, {cfg.method.name} {cfg.method.params} on the network of {source}, "
          f"{args.batches} batches x {n_meta} meta batches")
    print("class | right w>0 | wrong w>0 | α·M right | α·M wrong | wrong rate | AUROC −w̃ʳ | AUROC 1−p(ỹ)")
    for c, rows in enumerate(per_class):
        truth = np.concatenate([r["truth"] for r in rows])
        rec = {"class": c, "wrong_rate": float(truth.mean()) if truth.size else float("nan"),
               **{key: float(np.nanmean([r[key] for r in rows]))
                  for key in ("right_pos", "wrong_pos", "alpha_right", "alpha_wrong")},
               "auroc_meta": auroc(truth, np.concatenate([r["meta"] for r in rows])),
               "auroc_loss": auroc(truth, np.concatenate([r["loss"] for r in rows]))}
        out.append(rec)
        print(f"{c} | {rec['right_pos']:.3f} | {rec['wrong_pos']:.3f} | {rec['alpha_right']:.2f} | "
              f"{rec['alpha_wrong']:.2f} | {rec['wrong_rate']:.4f} | {rec['auroc_meta']:.3f} | {rec['auroc_loss']:.3f}")
    n = max(decisions["differ"], 1)
    shares = {"differ": decisions["differ"] / decisions["pixels"], "pick_clean": decisions["pick_clean"] / n,
              "given_clean": decisions["given_clean"] / n, "pick_fg": decisions["pick_fg"] / n}
    print(f"given != pseudo on {shares['differ']:.3f} of the pixels; there the weights pick the clean label "
          f"{shares['pick_clean']:.3f} (the given label is clean {shares['given_clean']:.3f}), "
          f"a foreground class {shares['pick_fg']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "step": run.start,
                                               "method": cfg.method.model_dump(mode="json"),
                                               "network_of": source,
                                               "batches": args.batches, "meta_batches": n_meta,
                                               "classes": out, "decisions": shares, "versions": package_versions()},
                                              indent=2))


if __name__ == "__main__":
    main()
