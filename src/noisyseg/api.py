"""The Python API: each step of the flow as a function (the CLI is a thin layer over it).

    from noisyseg import api
    res = api.train(data="Task02_Heart", method="clcs", out="runs/clcs")
    api.predict(run="runs/clcs", images="Task02_Heart/imagesTs", out="pred")
    api.evaluate(pred="pred", truth="Task02_Heart/labelsTs", out="eval")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .config import RunConfig, load_config
from .errors import ConfigError, DataError
from .io import atomic_dir, label_file_name, list_case_files, write_label


def open_data(data: Path | str, clean_cases: Path | str | None = None):
    """Open a dataset folder in any supported layout (see noisyseg.data.open_dataset)."""
    from .data import open_dataset

    return open_dataset(Path(data), clean_cases_file=clean_cases)


def make_config(config: Path | str | None = None, *, method: str | None = None, seed: int | None = None,
                max_steps: int | None = None, device: str | None = None, overrides: dict | None = None) -> RunConfig:
    """A validated RunConfig from an optional YAML file and explicit overrides."""
    over: dict = dict(overrides or {})
    if method is not None:
        over.setdefault("method", {})["name"] = method
    train = over.setdefault("train", {})
    for key, val in (("seed", seed), ("max_steps", max_steps), ("device", device)):
        if val is not None:
            train[key] = val
    return load_config(config, over)


def train(*, data: Path | str, out: Path | str, method: str | None = None, config: Path | str | None = None,
          seed: int | None = None, max_steps: int | None = None, device: str | None = None, resume: bool = False,
          clean_cases: Path | str | None = None, overrides: dict | None = None, progress: bool = True):
    """Train a method; returns the engine's TrainResult (run_dir, steps_done, best_score, ...)."""
    from .engine.trainer import train as run_training

    if resume and config is None and (Path(out) / "config.yaml").is_file():
        config = Path(out) / "config.yaml"
    cfg = make_config(config, method=method, seed=seed, max_steps=max_steps, device=device, overrides=overrides)
    from .methods import validate_method

    validate_method(cfg.method)  # a misspelt method fails before any data is read
    dataset = open_data(data, clean_cases)
    return run_training(cfg, dataset, Path(out), resume=resume, progress=progress)


def load_run(run: Path | str, checkpoint: str = "best", device: str = "auto"):
    """(method module in eval mode on its device, run data_info, RunConfig) of a trained run."""
    from .engine.checkpoint import load_checkpoint
    from .engine.setup import build_method, place_method, resolve_device

    run = Path(run)
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint must be 'best' or 'last', got '{checkpoint}'")
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run}: not a run folder (no config.yaml)")
    path = run / "checkpoints" / f"{checkpoint}.pt"
    if checkpoint == "best" and not path.is_file():
        path = run / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    cfg = RunConfig.model_validate(state["config"])
    info = state["data_info"]
    dev = resolve_device(device)
    method = build_method(cfg, len(info["modalities"]), len(info["class_names"]), info["train_dims"])
    method.load_state_dict(state["method"])
    return place_method(method, dev, cfg, info["train_dims"]).eval(), info, cfg


def predict_image(method, image: np.ndarray, info: dict, cfg: RunConfig,
                  spacing: tuple[float, ...] | None = None) -> np.ndarray:
    """Class probabilities (K, *S) of one normalised image (C, *S) with a loaded run.

    Runs trained with `data.target_spacing` predict on the resampled image, runs trained with
    `data.slice_size` on each slice resized to it; the probabilities are interpolated back to
    the input grid. Resampling needs the image's `spacing`."""
    from .data.resample import in_plane_factors, resample_image, restore_probs, zoom_factors
    from .engine.inference import predict_case

    device = next(method.parameters()).device
    target, size = cfg.data.target_spacing, cfg.data.slice_size
    x = image
    if target is not None:
        if spacing is None:
            raise ConfigError("this run resamples to data.target_spacing: the image's spacing is needed")
        x = resample_image(image, zoom_factors(spacing, target))
    if size is not None:
        x = resample_image(x, in_plane_factors(x.shape[1:], size, info["slice_axis"]))
    probs = predict_case(method.predict_proba, x, patch_size=info["patch_size"], overlap=cfg.train.sw_overlap,
                         mode=cfg.train.sw_mode, slice_axis=info["slice_axis"], device=device,
                         stride=cfg.train.sw_stride)
    return restore_probs(probs, image.shape[1:])


def to_label_values(pred: np.ndarray, label_values: list[int], ignore_value: int | None = None) -> np.ndarray:
    """Class indices (*S) back to the label values of the training files (BraTS: 0,1,2,4);
    ``IGNORE_INDEX`` pixels back to `ignore_value`."""
    from .data.case import to_raw_labels

    return to_raw_labels(pred, label_values, ignore_value)


def dataset_folder(path: Path | str):
    """The opened dataset when `path` is a dataset folder of a known layout (Decathlon, LA /
    Pancreas h5, BraTS, PROMISE12, Kvasir), else None (a plain folder of image or label files)."""
    from .data import detect_layout

    try:
        detect_layout(path)
    except DataError:
        return None
    return open_data(path)


SPLITS = ("test", "val", "train", "all")
"""The dataset splits `predict` and `evaluate` take (`split_cases`)."""
CHECKPOINTS = ("best", "last")
"""The checkpoints of a run `load_run` takes: validation-selected or final."""


def split_cases(ds, split: str) -> list:
    """The CaseRefs of a dataset split: 'test', 'val', 'train' or 'all'; DataError when empty."""
    if split not in SPLITS:
        raise ConfigError(f"split must be {', '.join(SPLITS)}, got '{split}'")
    refs = ds.split(split)
    if not refs:
        others = [s for s in ("val", "train") if s != split and ds.split(s)]
        hint = f" (use --split {others[0]})" if split == "test" and others else ""
        raise DataError(f"{ds.root}: no {split} cases{hint}")
    return refs


def predict(*, run: Path | str, images: Path | str, out: Path | str, checkpoint: str = "best",
            device: str = "auto", split: str = "test", progress: bool = True) -> list[Path]:
    """Predict every image of a folder, or every case of a dataset split, with a trained run.

    `images` is either a plain folder of image files (one output per case, named by its case
    id in the input's format, keeping its affine; PNG for PNG/JPEG input; nnU-Net channel
    files ``<ID>_0000``, ``<ID>_0001`` ... are one case ``<ID>``) or a dataset folder in any
    supported layout (e.g. LA's "2018LA_Seg_Training Set/<ID>/mri_norm2.h5"), whose `split`
    cases are written as <ID> plus the dataset's nnU-Net ``file_ending``, else <ID>.nii.gz with
    the case's affine and spacing (<ID>.png for 2D image datasets). All inputs are read and
    checked first; the output folder appears complete or not at all.
    """
    from .data.decathlon import _suffix, group_channel_files, read_channels

    method, info, cfg = load_run(run, checkpoint, device)
    ds = dataset_folder(images)
    loaded = []
    if ds is not None:
        from .data.case import check_compatible

        check_compatible(f"run {run}", info["class_names"], len(info["modalities"]), None, ds)
        for ref in split_cases(ds, split):
            c = ref.load()
            loaded.append((label_file_name(c.id, c.image_path, ds.file_ending), c.image, c.spacing, c.affine))
    else:
        files = list_case_files(Path(images))
        if not files:
            raise DataError(f"{images}: no image files (NIfTI, MetaImage, NRRD or PNG) and no dataset layout found")
        for cid, group in group_channel_files(files, len(info["modalities"])):
            image, spacing, affine = read_channels(group, info["modalities"], info["data_dims"])
            ext = _suffix(group[0])
            ext = ".png" if ext.lower() in (".jpg", ".jpeg", ".bmp", ".tif", ".tiff") else ext
            loaded.append((cid + ext, image, spacing, affine))
    out = Path(out)
    written = []
    with atomic_dir(out) as tmp:
        for name, image, spacing, affine in tqdm(loaded, desc="predict", disable=not progress):
            pred = predict_image(method, image, info, cfg, spacing).argmax(0)
            write_label(tmp / name, to_label_values(pred, info["label_values"]), affine=affine, spacing=spacing)
            written.append(out / name)
    return written


def evaluate(*, pred: Path | str, truth: Path | str, out: Path | str, convention: str = "monai",
             num_classes: int | None = None, include_background: bool = False, split: str = "test") -> dict:
    """Score predictions against references; writes metrics.csv and summary.json.

    `truth` is a folder of label files matched by case id (label values, regions and the
    ignore label come from a dataset.json beside it, as in nnU-Net's labelsTs/), or a dataset
    folder in any supported layout, whose `split` cases are the references (labels, spacing,
    label values, BraTS regions and the ignore label come from the dataset)."""
    import tempfile

    from .metrics import evaluate_folders

    ds = dataset_folder(truth)
    if ds is None:
        kw: dict = {}
        beside = Path(truth).parent / "dataset.json"
        if beside.is_file() and num_classes is None:
            from .data.decathlon import _read_json

            meta = _read_json(beside)
            if meta.label_values is not None:
                kw = {"label_values": meta.label_values, "regions": meta.regions, "ignore_value": meta.ignore_value}
        return evaluate_folders(pred, truth, out, num_classes=num_classes, convention=convention,
                                include_background=include_background, **kw)
    if num_classes is not None and num_classes != ds.num_classes:
        raise ConfigError(f"--num-classes {num_classes}: dataset {ds.root} has {ds.num_classes} classes "
                          f"({', '.join(ds.class_names)})")
    with tempfile.TemporaryDirectory(prefix=".noisyseg_truth.") as tmp:
        for ref in split_cases(ds, split):
            c = ref.load()
            if c.label is None:
                raise DataError(f"{c.image_path}: case '{c.id}' has no label to evaluate against")
            write_label(Path(tmp) / label_file_name(c.id, c.image_path),
                        to_label_values(c.label, ds.label_values, ds.ignore_value), affine=c.affine,
                        spacing=c.spacing)
        return evaluate_folders(pred, tmp, out, convention=convention, include_background=include_background,
                                label_values=ds.label_values, regions=ds.regions, ignore_value=ds.ignore_value,
                                distance_unit="mm" if ds.spacing_known else "pixel")
