"""`noisyseg demo`: the whole flow on embedded data, on a CPU, in minutes.

1. write the demo dataset (real MNI152 brain slices with grey/white-matter labels, or a
   3D phantom task), 2. corrupt the training labels with a noise protocol (clean labels kept
   in labelsTr_clean/), 3. train `supervised` on the clean labels (the ceiling) and each
   method on the noisy ones, 4. predict the test images, 5. evaluate on the clean test
   labels, 6. print the table and write figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .report.demo_report import CLEAN_TITLE as CLEAN_RUN
from .errors import ConfigError
from .io import atomic_path

DEMO_METHODS = ["supervised", "clcs", "metadcseg"]
METHOD_PARAMS: dict[str, dict] = {}  # every method with its defaults


@dataclass
class DemoResult:
    table: str
    summary: dict
    out: Path


DEMO_TASKS = ("mni", "phantom3d")


def demo_settings(task: str, quick: bool) -> dict:
    """Dataset size, noise parameters and config overrides for each demo variant."""
    if task == "mni":
        return {
            "data": {"n_train": 10 if quick else 16, "n_test": 4 if quick else 6},
            "noise": {"level": 1.0, "params": {"size_range": (3, 5) if quick else (3, 7)}},
            # L2B's 7-35 px kernels on 96x112 slices of thin cortex reach 1 - Dice of 0.63-0.79 only
            "noise_other": {"l2b": {"level": 0.7}},
            "config": {
                "data": {"patch_size": [96, 112], "batch_size": 4 if quick else 6, "val_fraction": 0.15},
                "net": {"arch": "unet", "channels": [16, 32, 64, 128], "features": 16},
                "optim": {"name": "adam", "lr": 3e-3},
                "train": {"max_steps": 80 if quick else 400, "val_every": 40 if quick else 100,
                          "log_every": 5, "ckpt_every": 100},
            },
        }
    if task == "phantom3d":
        return {
            "data": {"n_train": 6 if quick else 10, "n_test": 3 if quick else 4},
            "noise": {"level": 1.0, "params": {"size_range": (3, 5)}},
            "config": {
                "data": {"patch_size": [32, 32, 32], "batch_size": 2, "val_fraction": 0.15},
                "net": {"arch": "unet", "channels": [8, 16, 32], "features": 8},
                "optim": {"name": "adam", "lr": 3e-3},
                "train": {"max_steps": 40 if quick else 200, "val_every": 20 if quick else 100,
                          "log_every": 5, "ckpt_every": 100},
            },
        }
    raise ConfigError(f"demo --task: unknown task '{task}'; choose from: mni, phantom3d")


def write_demo_data(task: str, folder: Path, *, seed: int, quick: bool = False, overwrite: bool = False) -> Path:
    """Write the embedded dataset of a demo task ('mni' or 'phantom3d') at its demo size into `folder`."""
    from .data.demo_data import write_mni_demo, write_phantom_demo

    writer = write_mni_demo if task == "mni" else write_phantom_demo
    writer(folder, seed=seed, overwrite=overwrite, **demo_settings(task, quick)["data"])
    return folder


def run_demo(out: Path | str, *, quick: bool = False, task: str = "mni", methods: list[str] | None = None,
             noise: str = "morph", seed: int = 0, progress: bool = True) -> DemoResult:
    """Run the demo into `out`; returns the printed table and the summary."""
    from . import api
    from .config import deep_update
    from .runinfo import package_versions
    from .methods import available_methods, get_method_class
    from .noise import get_protocol
    from .modelnoise import make_noisy_dataset
    from .noise.registry import MODEL_PROTOCOLS
    from .report.demo_report import demo_figures, demo_table, run_dir_name

    out = Path(out)
    settings = demo_settings(task, quick)
    methods = methods or [m for m in DEMO_METHODS if m in available_methods()]
    for m in methods:
        get_method_class(m)
    if noise not in MODEL_PROTOCOLS:
        get_protocol(noise)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: demo output folder exists and is not empty (choose another --out)")
    t0 = time.perf_counter()

    data_dir = out / "data" / "clean"
    write_demo_data(task, data_dir, seed=seed, quick=quick)
    noisy_dir = out / "data" / f"noisy_{noise}"
    noise_kw = settings["noise"] if noise == "morph" else settings.get("noise_other", {}).get(noise, {})
    if noise in MODEL_PROTOCOLS:
        # a briefly trained source model: its errors are the label noise (and sfda adapts it first)
        source_run = out / "runs" / "noise_source_model"
        brief = deep_update(settings["config"], {"train": {"max_steps": 30, "val_every": 30}})
        api.train(data=data_dir, out=source_run, method="supervised", seed=seed, overrides=brief, progress=progress)
        noise_kw = {"source_run": source_run}
    make_noisy_dataset(data_dir, noisy_dir, protocol=noise, seed=seed, progress=progress, **noise_kw)

    runs = [(CLEAN_RUN, "supervised", data_dir)] + [(m, m, noisy_dir) for m in methods]
    summary: dict[str, dict] = {}
    for title, method, data in runs:
        run_dir = out / "runs" / run_dir_name(title)
        t_run = time.perf_counter()
        overrides = {**settings["config"], "method": {"params": METHOD_PARAMS.get(method, {})}}
        api.train(data=data, out=run_dir, method=method, seed=seed, overrides=overrides, progress=progress)
        pred_dir = run_dir / "pred_test"
        api.predict(run=run_dir, images=data_dir / "imagesTs", out=pred_dir, progress=False)
        ev = api.evaluate(pred=pred_dir, truth=data_dir / "labelsTs", out=run_dir / "eval_test")
        summary[title] = {"metrics": ev["metrics"], "train_seconds": time.perf_counter() - t_run}

    table = demo_table(summary)
    demo_figures(out, runs, data_dir, noisy_dir)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps({"task": task, "quick": quick, "noise": noise, "seed": seed,
                                   "settings": settings, "method_params": METHOD_PARAMS,
                                   "versions": package_versions(), "seconds": time.perf_counter() - t0,
                                   "results": summary}, indent=2))
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(table + "\n")
    return DemoResult(table, summary, out)
