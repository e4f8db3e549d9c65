"""Dataset-level label noise: a noisy copy of a dataset plus a per-case noise report.

`make_noisy_dataset` writes a Decathlon-layout copy whose `labelsTr/` carry the chosen
noise and whose `labelsTr_clean/` keep the clean labels, with `noise_report.csv` (one row
per training case) and `noise_summary.json`. Trusted cases (the dataset's clean set) always
keep their clean label. The folder is built beside the target and renamed into place at the
end, so a failure leaves nothing half-written.

Decathlon inputs keep their image files (hard links, else copies) and dataset.json, so a
model trained on the copy predicts the original images. Other layouts (LA/Pancreas h5,
BraTS, Kvasir) are converted: each case's normalised image is written as float32 NIfTI
(channels declared `noNorm`, so they are not normalised twice), labels as NIfTI.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.case import IGNORE_INDEX, Case, Dataset, to_raw_labels
from ..data.convert import write_as_decathlon
from ..errors import ConfigError, DataError, unknown_name
from ..io import (
    atomic_dir,
    case_id,
    file_kind,
    list_case_files,
    read_file,
    write_label,
)
from .morph import choose_clean_cases
from .registry import REGISTRY, apply_protocol, protocol_record, validate_level
from .report import noise_stats

DEFAULT_MORPH_LEVEL = REGISTRY["morph"].level.default  # MT-Noise: half of the training cases corrupted

ModelLabels = Callable[[Dataset, list[Case], set[str], Path], list[tuple[np.ndarray, dict]]]
"""A model protocol's labels: (dataset, its training cases, the corrupted ids, a scratch folder
beside the output) -> (label, info) per case (see :mod:`noisyseg.modelnoise`)."""


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _clean_of(case: Case) -> np.ndarray:
    return case.clean_label if case.clean_label is not None else case.label


def corrupted_cases(ids: list[str], trusted: set[str], protocol: str, level: float | None,
                    clean_fraction: float | None, rng: np.random.Generator, n_clean: int | None = None,
                    groups: dict[str, str] | None = None) -> set[str]:
    """Which training cases get noise, chosen by group (patient; each case its own group when
    `groups` is empty): `n_clean` groups kept clean when given; else, for a protocol whose level
    is the corrupted-case fraction (morph), a `level` fraction of the groups corrupted, otherwise
    all but a `clean_fraction`; trusted cases never."""
    group = (groups or {}).get
    candidates = list(dict.fromkeys(group(i, i) for i in ids if i not in trusted))
    if n_clean is not None:
        if not 0 <= n_clean <= len(candidates):
            raise ConfigError(f"n_clean must be in [0, {len(candidates)}] (untrusted training cases), got {n_clean}")
        keep = choose_clean_cases(candidates, n_clean=n_clean, rng=rng)
    else:
        spec = protocol_record(protocol).level
        if spec is not None and spec.keyword is None:
            frac_clean = 1.0 - (spec.default if level is None else level)
        else:
            frac_clean = clean_fraction or 0.0
        keep = choose_clean_cases(candidates, clean_fraction=frac_clean, rng=rng) if candidates else set()
    return {i for i in ids if i not in trusted and group(i, i) not in keep}


def check_protocol_params(protocol: str, params: dict) -> None:
    """ConfigError (with a suggestion) for a parameter the protocol does not take (the
    keyword-only parameters of its record's `params_of`, else of its generator: l2b's are
    those of its calibration)."""
    import inspect

    rec = protocol_record(protocol)
    fn = rec.params_of or rec.fn
    reserved = {"label", "labels", "spacing", "rng", "level"}
    allowed = [n for n, p in inspect.signature(fn).parameters.items()
               if p.kind == p.KEYWORD_ONLY and n not in reserved]
    for key in params:
        if key not in allowed:
            raise unknown_name(f"parameter of noise protocol '{protocol}'", key, allowed)


def noisy_labels(cases: list[Case], corrupt: set[str], *, protocol: str, level: float | None, seed: int,
                 params: dict, progress: bool, groups: dict[str, str] | None = None) -> list[tuple[np.ndarray, dict]]:
    """(label, info) per case: the protocol's output for corrupted cases, the clean label otherwise.

    Every case draws from its own generator seeded by (seed, index of its group), so one case's
    noise does not depend on the others', and the cases of one group (a patient's slices) draw
    the same parameters: one annotator style per patient (morph: the same operation and element).
    A ``dataset`` protocol (l2b) runs on the corrupted cases together (l2b is calibrated so the
    dataset's mean 1 − Dice lands on the level; its draws stay per case).
    """
    rec = protocol_record(protocol)
    group = (groups or {}).get
    unit_index = {g: k for k, g in enumerate(dict.fromkeys(group(c.id, c.id) for c in cases))}
    out: list[tuple[np.ndarray, dict] | None] = [None] * len(cases)
    todo = [i for i, c in enumerate(cases) if c.id in corrupt]
    for i, c in enumerate(cases):
        if c.id not in corrupt:
            out[i] = (_clean_of(c), {"protocol": "none"})
    if rec.kind == "dataset":
        labels = [np.maximum(_clean_of(cases[i]), 0) for i in todo]
        results = rec.dataset_fn(labels, rec.level.default if level is None else level, np.random.default_rng(seed),
                                 spacing=cases[todo[0]].spacing if todo else None, **params)
        for i, res in zip(todo, results):
            out[i] = res
        return out  # type: ignore[return-value]
    gen_level = level if rec.level is not None and rec.level.keyword is not None else None
    for i in tqdm(todo, desc=f"noise {protocol}", disable=not progress, leave=False):
        c = cases[i]
        unit = unit_index[group(c.id, c.id)]
        annotated = np.maximum(_clean_of(c), 0)  # ignored pixels read as background; keep_ignored restores them
        out[i] = apply_protocol(protocol, annotated, rng=np.random.default_rng([seed, unit]), level=gen_level,
                                spacing=c.spacing, **params)
    return out  # type: ignore[return-value]


def keep_ignored(cases: list[Case], results: list[tuple[np.ndarray, dict]]) -> list[tuple[np.ndarray, dict]]:
    """The noisy labels with every ignored (unannotated) pixel of the clean label ignored again:
    generators read ignored pixels as background, and noise never annotates them."""
    out = []
    for c, (lab, info) in zip(cases, results):
        ignored = _clean_of(c) < 0
        if ignored.any():
            lab = np.array(lab, copy=True)
            lab[ignored] = IGNORE_INDEX
        out.append((lab, info))
    return out


def _label_files(folder: Path) -> dict[str, Path]:
    return {case_id(p): p for p in list_case_files(folder)} if folder.is_dir() else {}


def _write_decathlon_copy(ds: Dataset, tmp: Path, cases: list[Case], noisy: list[np.ndarray]) -> None:
    root = ds.root
    shutil.copytree(root, tmp, copy_function=_link_or_copy, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("labelsTr", "labelsTr_clean", "noise_report.csv",
                                                  "noise_summary.json", "figures"))
    originals = _label_files(root / "labelsTr_clean") or _label_files(root / "labelsTr")
    (tmp / "labelsTr_clean").mkdir(exist_ok=True)
    for case, lab in zip(cases, noisy):
        src = originals.get(case.id)
        if src is None:
            raise DataError(f"{root / 'labelsTr'}: no label file for case '{case.id}'")
        kind = file_kind(src)
        affine = None if kind == "image2d" else read_file(src).affine
        if kind == "metaimage":  # a header naming a data file beside it: write a whole copy
            write_label(tmp / "labelsTr_clean" / src.name, to_raw_labels(_clean_of(case), ds.label_values,
                                                                         ds.ignore_value), affine=affine,
                        spacing=case.spacing)
        else:
            _link_or_copy(str(src), str(tmp / "labelsTr_clean" / src.name))
        write_label(tmp / "labelsTr" / src.name, to_raw_labels(lab, ds.label_values, ds.ignore_value),
                    affine=affine, spacing=case.spacing)


def make_noisy_dataset(data: Path | str, out: Path | str, *, protocol: str, level: float | None = None,
                       seed: int = 0, params: dict | None = None, clean_fraction: float | None = None,
                       figures: bool = False, progress: bool = True, clean_cases_file: Path | str | None = None,
                       n_clean: int | None = None, model_labels: ModelLabels | None = None) -> Path:
    """Write a noisy copy of a dataset (see the module docstring); returns `out`.

    Args:
        data: a dataset folder in any supported layout, with training labels.
        out: the folder to create (must not exist or be empty).
        protocol: a name from noisyseg.noise.registry.REGISTRY (label, dataset or model kind).
        level: the protocol's level (morph: fraction of corrupted cases, default 0.5;
            l2b: target 1 − Dice; flip: rate; classswap: fraction).
        seed: seeds every random choice.
        params: the protocol's own keyword parameters (e.g. morph size_range).
        clean_fraction: for protocols other than morph, the share of cases kept clean.
        n_clean: the number of (untrusted) cases kept clean, for any protocol (MTCL's LA
            recipe keeps 8 of 80); overrides `level`'s case fraction for morph.
        figures: also write clean-vs-noisy overlays and a histogram of per-case noise levels.
        model_labels: the labels of a ``model`` protocol (``pseudo``, ``sfda``), which train
            and run models: :func:`noisyseg.modelnoise.make_noisy_dataset` supplies them.
    """
    from ..data import open_dataset
    from ..runinfo import package_versions

    params = dict(params or {})
    model_protocol = protocol_record(protocol).kind == "model"
    if model_protocol:
        if level is not None:
            raise ConfigError(f"noise protocol '{protocol}' takes no level")
        if model_labels is None:
            raise ConfigError(f"noise protocol '{protocol}' makes labels with a model: "
                              "use noisyseg.modelnoise.make_noisy_dataset")
    else:
        if model_labels is not None:
            raise ConfigError(f"noise protocol '{protocol}' takes no model labels")
        check_protocol_params(protocol, params)
        level = validate_level(protocol, level)
        if protocol_record(protocol).level is None and level is not None:
            raise ConfigError(f"noise protocol '{protocol}' takes no level")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output folder exists and is not empty")
    ds = open_dataset(Path(data), clean_cases_file=clean_cases_file)
    if not ds.train:
        raise DataError(f"{ds.root}: no training cases")
    cases = [r.load() for r in tqdm(ds.train, desc="reading labels", disable=not progress, leave=False)]
    for c in cases:
        if c.label is None:
            raise DataError(f"{c.image_path}: training case '{c.id}' has no label")
    rng = np.random.default_rng([seed, 1])
    corrupt = corrupted_cases([c.id for c in cases], set(ds.trusted_ids), protocol, level, clean_fraction, rng,
                              n_clean, ds.groups)
    if model_protocol:
        out.parent.mkdir(parents=True, exist_ok=True)
        results = model_labels(ds, cases, corrupt, out.parent)
    else:
        results = noisy_labels(cases, corrupt, protocol=protocol, level=level, seed=seed, params=params,
                               progress=progress, groups=ds.groups)
    results = keep_ignored(cases, results)

    rows = []
    for c, (lab, info) in zip(cases, results):
        stats = noise_stats(_clean_of(c), lab, ds.num_classes)
        rows.append({"case": c.id, **({"group": ds.group_of(c.id)} if ds.groups else {}), "corrupted": int(c.id in corrupt), **stats,
                     "operation": json.dumps(info, sort_keys=True)})

    with atomic_dir(out) as tmp:
        noisy = [r[0] for r in results]
        if ds.layout == "decathlon":
            _write_decathlon_copy(ds, tmp, cases, noisy)
        else:
            write_as_decathlon(ds, tmp, cases, noisy, clean=[_clean_of(c) for c in cases], test=ds.test,
                               progress=progress)
        keys = list(rows[0].keys())
        with (tmp / "noise_report.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        levels = np.array([r["noise_level"] for r in rows if r["corrupted"]], dtype=float)
        summary = {
            "protocol": protocol, "level": level, "seed": seed, "params": params, "source": str(ds.root),
            "n_cases": len(rows), "n_corrupted": len(corrupt),
            "mean_noise_level_corrupted": float(levels.mean()) if levels.size else 0.0,
            "mean_noise_level_all": float(np.mean([r["noise_level"] for r in rows])),
            "mean_changed_fraction": float(np.mean([r["changed_fraction"] for r in rows])),
            "versions": package_versions(),
        }
        (tmp / "noise_summary.json").write_text(json.dumps(summary, indent=2))
        if figures:
            _figures(tmp / "figures", cases, results, rows, ds.num_classes)
    return out


def _figures(folder: Path, cases: list[Case], results, rows: list[dict], num_classes: int) -> None:
    from ..report.figures import _plt, plot_overlays, save_figure

    worst = sorted(range(len(rows)), key=lambda i: -rows[i]["noise_level"])[:4]
    plot_overlays([(cases[i].id, cases[i].image, {"clean": _clean_of(cases[i]), "noisy": results[i][0]})
                   for i in worst], folder / "clean_vs_noisy.png", num_classes)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist([r["noise_level"] for r in rows], bins=20, color="tab:orange")
    ax.set_xlabel("1 - Dice(noisy, clean) per case")
    ax.set_ylabel("cases")
    save_figure(fig, folder / "noise_levels.png")
