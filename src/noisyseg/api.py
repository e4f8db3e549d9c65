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
from .io import case_id, list_case_files, write_label


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
    from .engine.trainer import build_method, resolve_device

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
    return method.to(dev).eval(), info, cfg


def predict_image(method, image: np.ndarray, info: dict, cfg: RunConfig) -> np.ndarray:
    """Class probabilities (K, *S) of one normalised image (C, *S) with a loaded run."""
    from .engine.inference import predict_case

    device = next(method.parameters()).device
    return predict_case(method.predict_proba, image, patch_size=info["patch_size"], overlap=cfg.train.sw_overlap,
                        mode=cfg.train.sw_mode, slice_axis=info["slice_axis"], device=device,
                        stride=cfg.train.sw_stride)


def to_label_values(pred: np.ndarray, label_values: list[int]) -> np.ndarray:
    """Class indices (*S) back to the label values of the training files (BraTS: 0,1,2,4)."""
    return np.asarray(label_values, dtype=np.int64)[pred]


def predict(*, run: Path | str, images: Path | str, out: Path | str, checkpoint: str = "best",
            device: str = "auto", progress: bool = True) -> list[Path]:
    """Predict every image file of a folder; one output per input with the same file name
    (NIfTI keeps the input's affine; PNG for PNG/JPEG input). All inputs are read and checked
    before the output folder is created."""
    from .data.decathlon import read_channels

    method, info, cfg = load_run(run, checkpoint, device)
    files = list_case_files(Path(images))
    if not files:
        raise DataError(f"{images}: no image files (NIfTI or PNG) found")
    loaded = []
    for f in files:
        image, spacing, affine = read_channels([f], info["modalities"], info["data_dims"])
        loaded.append((f, image, spacing, affine))
    out = Path(out)
    written = []
    for f, image, spacing, affine in tqdm(loaded, desc="predict", disable=not progress):
        pred = predict_image(method, image, info, cfg).argmax(0)
        name = f.name if not f.name.lower().endswith((".jpg", ".jpeg", ".bmp", ".tif", ".tiff")) \
            else case_id(f) + ".png"
        written.append(write_label(out / name, to_label_values(pred, info["label_values"]),
                                   affine=affine, spacing=spacing))
    return written


def evaluate(*, pred: Path | str, truth: Path | str, out: Path | str, convention: str = "monai",
             num_classes: int | None = None, include_background: bool = False) -> dict:
    """Score predictions against references; writes metrics.csv and summary.json."""
    from .metrics import evaluate_folders

    return evaluate_folders(pred, truth, out, num_classes=num_classes, convention=convention,
                            include_background=include_background)
