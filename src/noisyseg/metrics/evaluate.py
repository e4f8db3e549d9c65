"""Score a folder of predictions against a folder of reference labels; write metrics.csv and summary.json.

Files are matched by case id (the file name without its extension), NIfTI (.nii, .nii.gz)
and 2D images (PNG, ...). HD95 and ASD are in millimetres, with the spacing taken from the
reference NIfTI header unless given (2D images have spacing 1). The empty-mask policy and
the surface conventions are those of :mod:`noisyseg.metrics.surface`; both are recorded in
``summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_path, case_id, file_kind, list_case_files, read_file
from .case_metrics import case_metrics, metric_names
from .surface import CONVENTIONS, EMPTY_MASK_POLICY

__all__ = ["evaluate_folders", "summarize"]


def _index_folder(folder: Path, what: str) -> dict[str, Path]:
    files = list_case_files(folder)
    if not files:
        raise DataError(f"{folder}: no {what} files found (expected NIfTI .nii/.nii.gz, MetaImage .mhd/.mha or PNG)")
    out: dict[str, Path] = {}
    for f in files:
        cid = case_id(f)
        if cid in out:
            raise DataError(f"{f}: case id '{cid}' appears twice in {folder} (also {out[cid].name})")
        out[cid] = f
    return out


def _load_labels(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Integer label map (2D or 3D) and spacing of one file; DataError naming the file otherwise."""
    vol = read_file(path)
    arr = vol.array
    kind = file_kind(path)
    if kind == "image2d" and arr.ndim == 3:
        # grey masks saved as RGB(A): accept only when the colour channels agree
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DataError(f"{path}: colour image, expected a label mask with one channel")
        arr = rgb[..., 0]
    if kind == "nifti" and arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2D or 3D label map, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{path}: label map holds non-integer values")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise DataError(f"{path}: label map holds negative values (min {arr.min()})")
    return arr, tuple(float(s) for s in vol.spacing[: arr.ndim])


def _map_values(arr: np.ndarray, path: Path, label_values: np.ndarray, what: str) -> np.ndarray:
    """Raw label values -> class indices (position in label_values); DataError on unknown values."""
    present = np.unique(arr)
    unknown = np.setdiff1d(present, label_values)
    if unknown.size:
        raise DataError(
            f"{path}: {what} has label values {unknown.tolist()} not in label_values {label_values.tolist()}"
        )
    lut = np.zeros(int(label_values.max()) + 1, dtype=np.int32)
    lut[label_values] = np.arange(label_values.size, dtype=np.int32)
    return lut[arr]


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else repr(float(v))


def summarize(rows: Sequence[Mapping[str, float]], columns: Sequence[str]) -> dict[str, dict]:
    """Per column: mean and population std (ddof=0) over defined values, n defined, n_undefined (NaN)."""
    out = {}
    for col in columns:
        vals = np.array([r[col] for r in rows], dtype=np.float64)
        ok = vals[~np.isnan(vals)]
        out[col] = {
            "mean": float(ok.mean()) if ok.size else None,
            "std": float(ok.std()) if ok.size else None,
            "n": int(ok.size),
            "n_undefined": int(vals.size - ok.size),
        }
    return out


def evaluate_folders(pred_dir: Path | str, truth_dir: Path | str, out_dir: Path | str, *,
                     num_classes: int | None = None, spacing: Sequence[float] | None = None,
                     convention: str = "monai", include_background: bool = False,
                     label_values: Sequence[int] | None = None,
                     regions: Mapping[str, Sequence[int]] | None = None,
                     ignore_value: int | None = None, distance_unit: str = "mm") -> dict:
    """Score every reference case against the prediction with the same case id.

    Args:
        pred_dir: folder of predicted label maps.
        truth_dir: folder of reference label maps; every case here needs a prediction
            (extra predictions are listed in the summary as ``unmatched_predictions``).
        out_dir: where ``metrics.csv`` and ``summary.json`` go; created only after every
            input has been read and validated, and both files are written atomically.
        num_classes: classes including background; inferred as max label + 1 over all files
            when None (the labels found must then be consecutive, else pass ``label_values``).
        spacing: voxel size in mm overriding the file headers (NIfTI zooms; 1 for PNG).
        convention: ``"monai"`` (default) or ``"medpy"`` surface-distance aggregation.
        include_background: also score class 0.
        label_values: raw label values in class order, e.g. BraTS ``[0, 1, 2, 4]`` or PNG
            masks ``[0, 255]``; raw value ``label_values[i]`` becomes class index i.
        regions: name -> class indices (after ``label_values`` mapping) scored as one mask,
            e.g. ``{"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}``.
        distance_unit: the unit of HD95 / ASD recorded in the summary: ``"mm"``, or
            ``"pixel"`` for data that carries no spacing (unit voxels).
        ignore_value: raw value of unannotated reference voxels (nnU-Net v2 ``"ignore"``),
            excluded from every metric.

    Returns:
        The summary written to ``summary.json``: ``metrics`` maps each CSV column to
        ``{mean, std, n, n_undefined}``, plus the convention, empty-mask policy and settings.

    Raises:
        DataError: empty folder, missing prediction, unreadable file, shape or spacing
            mismatch, label values outside the classes; the message names the file.
        ConfigError: inconsistent options.
    """
    pred_dir, truth_dir, out_dir = Path(pred_dir), Path(truth_dir), Path(out_dir)
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown convention '{convention}'; choose from: {', '.join(CONVENTIONS)}")
    lv = None
    if label_values is not None:
        lv = np.asarray(list(label_values), dtype=np.int64)
        if lv.ndim != 1 or lv.size < 1 or np.unique(lv).size != lv.size or lv.min() < 0:
            raise ConfigError(f"label_values must be distinct non-negative integers, got {list(label_values)}")
        if num_classes is not None and num_classes != lv.size:
            raise ConfigError(f"num_classes={num_classes} but label_values has {lv.size} entries")
        num_classes = int(lv.size)
    if num_classes is not None and num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    regions = {str(k): [int(c) for c in v] for k, v in (regions or {}).items()}
    for rname, members in regions.items():
        if not members or min(members) < 0 or (num_classes is not None and max(members) >= num_classes):
            raise ConfigError(f"region '{rname}' must list class indices in [0, {num_classes}), got {members}")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: output path exists and is not a folder")

    truths = _index_folder(truth_dir, "label")
    preds = _index_folder(pred_dir, "prediction")
    missing = [cid for cid in truths if cid not in preds]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{truths[missing[0]]}: no prediction for case '{missing[0]}' in {pred_dir}{more}")
    unmatched = sorted(cid for cid in preds if cid not in truths)

    from tqdm.auto import tqdm

    rows: list[dict[str, float]] = []
    seen: set[int] = set()
    region_max = max((max(m) for m in regions.values() if m), default=0)
    for cid in tqdm(list(truths), desc="evaluate", unit="case", disable=None):
        t_path, p_path = truths[cid], preds[cid]
        truth, t_sp = _load_labels(t_path)
        pred, p_sp = _load_labels(p_path)
        ignored = truth == ignore_value if ignore_value is not None else None
        if ignored is not None:
            truth = np.where(ignored, 0 if lv is None else lv[0], truth)
        if pred.shape != truth.shape:
            raise DataError(f"{p_path}: shape {pred.shape} does not match the label {t_path.name} {truth.shape}")
        if spacing is not None:
            sp = tuple(float(s) for s in spacing)
            if len(sp) != truth.ndim:
                raise ConfigError(f"spacing {sp} has {len(sp)} values but {t_path} is {truth.ndim}D")
        else:
            sp = t_sp
            if (file_kind(p_path) == "nifti" and file_kind(t_path) == "nifti"
                    and not np.allclose(p_sp, t_sp, rtol=1e-3, atol=1e-5)):
                raise DataError(f"{p_path}: voxel spacing {p_sp} differs from the label's {t_sp} "
                                f"(pass spacing= to override)")
        if lv is not None:
            truth = _map_values(truth, t_path, lv, "label")
            pred = _map_values(pred, p_path, lv, "prediction")
        elif num_classes is not None:
            for arr, path, what in ((truth, t_path, "label"), (pred, p_path, "prediction")):
                if arr.max() >= num_classes:
                    raise DataError(f"{path}: {what} has label value {int(arr.max())} outside the "
                                    f"{num_classes} classes 0..{num_classes - 1}")
        else:
            seen.update(np.unique(truth).tolist())
            seen.update(np.unique(pred).tolist())
        if ignored is not None:
            truth = np.where(ignored, -1, truth)
        n_case = num_classes if num_classes is not None else max(int(truth.max()), int(pred.max()), region_max) + 1
        try:
            rows.append(case_metrics(pred, truth, num_classes=n_case, spacing=sp, convention=convention,
                                     include_background=include_background, regions=regions))
        except ValueError as exc:
            raise DataError(f"{p_path}: {exc}") from exc

    if num_classes is None:
        num_classes = max(max(seen) + 1, region_max + 1)
        absent = sorted(set(range(num_classes)) - seen)
        if absent:
            found = sorted(seen)
            raise DataError(f"{truth_dir}: label values {found} are not consecutive class indices "
                            f"(none of {absent[:5]}); pass label_values={found} or num_classes")
    columns = metric_names(num_classes, include_background=include_background, regions=regions)
    rows = [{c: r.get(c, float("nan")) for c in columns} for r in rows]

    summary = {
        "n_cases": len(rows),
        "convention": convention,
        "empty_mask_policy": EMPTY_MASK_POLICY,
        "units": {"dice": "fraction", "iou": "fraction", "hd95": distance_unit, "asd": distance_unit},
        "std": "population standard deviation (ddof=0) over defined values",
        "num_classes": int(num_classes),
        "include_background": include_background,
        "label_values": None if lv is None else lv.tolist(),
        "regions": regions,
        "ignore_value": ignore_value,
        "spacing": "from file headers" if spacing is None else [float(s) for s in spacing],
        "unmatched_predictions": unmatched,
        "metrics": summarize(rows, columns),
    }
    with atomic_path(out_dir / "metrics.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", *columns])
            for cid, row in zip(truths, rows):
                writer.writerow([cid, *(_fmt(row[c]) for c in columns)])
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
