"""The `noisyseg` command line: a thin layer over noisyseg.api.

Every user-facing error (NoisySegError) becomes one line on stderr and exit code 2. The
choices that options list in --help come from the registries (methods, noise protocols,
audit scores), so a new entry shows up without touching this file.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .api import CHECKPOINTS, SPLITS
from .audit import AUDIT_METHODS, CASE_SCORES
from .demo import DEMO_METHODS, DEMO_TASKS
from .errors import NoisySegError
from .methods import available_methods
from .noise.registry import MODEL_PROTOCOLS, PROTOCOLS

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Medical image segmentation that stays accurate when the training labels are wrong.")

METHODS = tuple(available_methods())
NOISE_PROTOCOLS = tuple(PROTOCOLS) + tuple(MODEL_PROTOCOLS)


def one_of(choices) -> str:
    """'one of: a, b, c' for an option's help."""
    return "one of: " + ", ".join(choices)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"noisyseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="print the noisyseg version and exit")) -> None:
    """Medical image segmentation that stays accurate when the training labels are wrong."""


def handle_errors(fn):
    """Run a command; print a NoisySegError as one line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NoisySegError as exc:
            typer.echo(f"noisyseg: error: {exc}", err=True)
            raise typer.Exit(2)

    return wrapper


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Launcher(str, Enum):
    local = "local"
    slurm = "slurm"
    submitit_local = "submitit-local"


class Convention(str, Enum):
    monai = "monai"
    medpy = "medpy"


@app.command()
@handle_errors
def train(
    data: Path = typer.Option(..., help="dataset folder (Decathlon / nnU-Net raw, LA/Pancreas h5, BraTS, PROMISE12 "
                                        "or Kvasir layout)"),
    method: str = typer.Option("supervised", help=f"training method, {one_of(METHODS)} (`noisyseg methods`)"),
    out: Path = typer.Option(..., help="run folder to create (or to continue with --resume)"),
    config: Optional[Path] = typer.Option(None, help="YAML config (configs/example.yaml lists every option)"),
    seed: Optional[int] = typer.Option(None, help="overrides train.seed (network initialisation, batches)"),
    max_steps: Optional[int] = typer.Option(None, help="total optimisation steps (also after --resume)"),
    device: Optional[Device] = typer.Option(None, help="overrides train.device"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint"),
    clean_cases: Optional[Path] = typer.Option(None, help="text file of trusted case ids, one per line"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train a method on a dataset; the run folder gets checkpoints, train_log.csv, train.log and figures.

    Example: noisyseg train --data Task02_Heart --method clcs --out runs/clcs"""
    from . import api

    res = api.train(data=data, method=method, out=out, config=config, seed=seed, max_steps=max_steps,
                    device=device.value if device else None, resume=resume, clean_cases=clean_cases,
                    progress=not quiet)
    if res.is_main:  # under torchrun, one line for the run
        typer.echo(res.message())
    if res.interrupted:
        raise typer.Exit(130)


@app.command()
@handle_errors
def predict(
    run: Path = typer.Option(..., help="a trained run folder"),
    images: Path = typer.Option(..., help="folder of images (NIfTI, MetaImage, NRRD, PNG; nnU-Net channel files "
                                          "<ID>_0000, <ID>_0001 are one case) or a dataset folder in any layout"),
    out: Path = typer.Option(..., help="folder for the predicted label maps, <ID> + the input's (or dataset's) "
                                       "file ending"),
    checkpoint: str = typer.Option("best", help=f"{one_of(CHECKPOINTS)} (best: selected on validation)"),
    device: Device = typer.Option(Device.auto, help="where the network runs (auto: cuda when available)"),
    split: str = typer.Option("test", help=f"dataset folders: the cases of this split, {one_of(SPLITS)}"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Predict label maps for every image of a folder, or every case of a dataset split, with a trained run.

    Example: noisyseg predict --run runs/clcs --images Task02_Heart/imagesTs --out pred"""
    from . import api

    paths = api.predict(run=run, images=images, out=out, checkpoint=checkpoint, device=device.value,
                        split=split, progress=not quiet)
    typer.echo(f"wrote {len(paths)} predictions to {out}")


@app.command()
@handle_errors
def evaluate(
    pred: Path = typer.Option(..., help="folder of predicted label maps"),
    truth: Path = typer.Option(..., help="folder of reference label maps (matched by case id; classes and ignore "
                                         "label from a dataset.json beside it), or a dataset folder in any layout "
                                         "(its --split cases)"),
    out: Path = typer.Option(..., help="folder for metrics.csv and summary.json"),
    convention: Convention = typer.Option(Convention.monai, help="surface-distance convention"),
    num_classes: Optional[int] = typer.Option(None, help="classes incl. background (default: from the files)"),
    include_background: bool = typer.Option(False, help="also score class 0"),
    split: str = typer.Option("test", help=f"--truth dataset folders: the cases of this split, {one_of(SPLITS)}"),
) -> None:
    """Dice, IoU, HD95 and ASD per case and class; mean and std in summary.json.

    --convention medpy reproduces the numbers of the LA / Pancreas papers (medpy's hd95 and
    asd); monai is symmetric (see the README's worked example). Ignored (unannotated) voxels
    are left out of every metric.

    Example: noisyseg evaluate --pred pred --truth Task02_Heart/labelsTs --out eval"""
    from . import api

    summary = api.evaluate(pred=pred, truth=truth, out=out, num_classes=num_classes, convention=convention.value,
                           include_background=include_background, split=split)
    from .report.tables import format_summary

    typer.echo(format_summary(summary))


@app.command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), help="output folder"),
    quick: bool = typer.Option(False, help="a smaller run: fewer slices and steps (about a minute on 2 CPU cores)"),
    task: str = typer.Option("mni", help=f"{one_of(DEMO_TASKS)} (mni: 2D brain tissue, real anatomy)"),
    methods: Optional[str] = typer.Option(None, help=f"comma-separated methods (default: "
                                                     f"{', '.join(DEMO_METHODS)}), each {one_of(METHODS)}"),
    noise: str = typer.Option("morph", help=f"noise protocol for the training labels, {one_of(NOISE_PROTOCOLS)}"),
    seed: int = typer.Option(0, help="seed of the noise, the split and the training runs"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """The whole flow on embedded data: noisy labels, training, prediction, evaluation, table, figures.

    Example: noisyseg demo --quick --out demo_out"""
    from .demo import run_demo

    result = run_demo(out, quick=quick, task=task, methods=methods.split(",") if methods else None,
                      noise=noise, seed=seed, progress=not quiet)
    typer.echo(result.table)
    typer.echo(f"\nfigures and runs in {out}")


@app.command()
@handle_errors
def noise(
    data: Path = typer.Option(..., help="dataset folder with training labels"),
    protocol: str = typer.Option(..., help=f"noise protocol, {one_of(NOISE_PROTOCOLS)}"),
    out: Path = typer.Option(..., help="folder for the noisy copy (Decathlon layout)"),
    level: Optional[float] = typer.Option(None, help="morph: corrupted-case fraction; l2b: 1-Dice; flip: rate"),
    seed: int = typer.Option(0, help="seed of the corrupted-case choice and of every generator"),
    clean_fraction: Optional[float] = typer.Option(None, help="share of cases kept clean (not morph)"),
    n_clean: Optional[int] = typer.Option(None, help="number of cases kept clean (any protocol)"),
    clean_cases: Optional[Path] = typer.Option(None, help="trusted case ids (always kept clean)"),
    figures: bool = typer.Option(False, help="write clean-vs-noisy overlays and a noise histogram"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    source: Optional[Path] = typer.Option(None, help="sfda: source dataset to train a supervised source model on"),
    source_run: Optional[Path] = typer.Option(None, help="pseudo/sfda: trained run folder used as source model"),
    param: Optional[list[str]] = typer.Option(None, help="protocol parameter KEY=VALUE (repeatable), "
                                                      "e.g. size_range=[3,7] for morph, steps=100 for sfda"),
    source_config: Optional[Path] = typer.Option(None, help="sfda --source: YAML config of the source training"),
) -> None:
    """Write a copy of a dataset whose training labels carry a chosen noise, plus noise_report.csv.

    Model protocols: pseudo (labels = predictions of --source-run) and sfda (source model from
    --source-run or trained on --source, entropy-adapted to the target images, then predicting).
    Ignored (unannotated) voxels stay ignored.

    Example: noisyseg noise --data Task02_Heart --protocol morph --level 0.5 --out heart_morph"""
    import json

    from .config import load_yaml_mapping, parse_key_values
    from .modelnoise import make_noisy_dataset

    make_noisy_dataset(data, out, protocol=protocol, level=level, seed=seed, clean_fraction=clean_fraction,
                       n_clean=n_clean, figures=figures, progress=not quiet, clean_cases_file=clean_cases,
                       source=source, source_run=source_run, params=parse_key_values(param or [], "--param"),
                       source_overrides=load_yaml_mapping(source_config) if source_config else None)
    summary = json.loads((out / "noise_summary.json").read_text())
    typer.echo(f"{summary['n_corrupted']}/{summary['n_cases']} cases corrupted; mean 1-Dice over corrupted "
               f"cases {summary['mean_noise_level_corrupted']:.3f}; written to {out}")


@app.command()
@handle_errors
def audit(
    run: Path = typer.Option(..., help="a trained run folder"),
    data: Path = typer.Option(..., help="dataset folder whose training labels are scored"),
    out: Path = typer.Option(..., help="folder for maps/, cases.csv, summary.json and report.md"),
    method: str = typer.Option("auto", help=f"voxel score, {one_of(AUDIT_METHODS)} (auto: 2D MetaDCSeg "
                                            "runs with trusted cases their meta weights, else self_confidence; "
                                            "threshold: CLCS runs their learnt class thresholds)"),
    case_score: str = typer.Option("suspected_fraction", help=f"per-case score, {one_of(CASE_SCORES)}"),
    top_percent: float = typer.Option(1.0, help="mean_topk: share (%) of the highest voxel scores"),
    checkpoint: str = typer.Option("best", help=f"{one_of(CHECKPOINTS)} (best: selected on validation)"),
    device: Device = typer.Option(Device.auto, help="where the network runs (auto: cuda when available)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Score the training labels with a trained run: per-voxel error maps, a ranked cases.csv, report.md.

    Example: noisyseg audit --run runs/supervised --data heart_morph --out audit"""
    from .audit import audit as run_audit

    summary = run_audit(run=run, data=data, out=out, method=method, case_score=case_score,
                        top_percent=top_percent, checkpoint=checkpoint, device=device.value, progress=not quiet)
    worst = ", ".join(summary["ranking"][:3])
    typer.echo(f"audited {summary['n_cases']} cases ({summary['signal']}); worst: {worst}; report in {out}")
    det = summary.get("detection")
    if det:
        typer.echo(f"vs clean labels: voxel AUROC {det['voxel_auroc']:.3f}, AP {det['voxel_average_precision']:.3f}, "
                   f"Spearman(case, 1-Dice) {det['spearman_vs_1_minus_dice']:.3f}")


@app.command()
@handle_errors
def benchmark(
    config: Path = typer.Option(..., help="benchmark config (configs/*.yaml: a benchmark: section + training config)"),
    out: Path = typer.Option(..., help="output folder (an interrupted benchmark in it is resumed)"),
    data: Optional[str] = typer.Option(None, help="dataset folder (overrides benchmark.data)"),
    methods: Optional[str] = typer.Option(None, help=f"comma-separated methods (overrides benchmark.methods), "
                                                     f"each {one_of(METHODS)}"),
    seeds: Optional[int] = typer.Option(None, help="number of training seeds 0..N-1 (overrides benchmark.seeds)"),
    max_steps: Optional[int] = typer.Option(None, help="override train.max_steps of every run (smoke tests)"),
    device: Optional[Device] = typer.Option(None, help="overrides train.device"),
    workers: Optional[int] = typer.Option(None, help="local runs at once (default: one per GPU, else 1); CPU "
                                                     "runs share the cores equally (torch threads = cores / N)"),
    threads: Optional[int] = typer.Option(None, help="torch threads of each run (default: cores / --workers); "
                                                     "runs are bit-identical across launches with equal threads"),
    launcher: Launcher = typer.Option(Launcher.local, help="local, slurm (submitit job array) or submitit-local"),
    partition: Optional[str] = typer.Option(None, help="slurm: partition (overrides benchmark.slurm.partition)"),
    time_min: Optional[int] = typer.Option(None, help="slurm: time limit of one run in minutes"),
    gpus_per_job: Optional[int] = typer.Option(None, help="slurm: GPUs of one run"),
    cpus_per_job: Optional[int] = typer.Option(None, help="slurm: CPU cores of one run"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Noise, train every method and seed, predict, evaluate on clean test labels: the papers' table.

    Writes results.csv, summary.md (mean ± std, best in bold, published numbers beside),
    summary.json and figures/ into --out; finished method/seed runs are skipped on rerun, and
    two launches on one --out never train a run twice (each run is locked while it trains).

    Example: noisyseg benchmark --config configs/demo.yaml --out bench_demo"""
    from .benchmark import BenchmarkInterrupted, run_benchmark

    method_list = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    slurm = {k: v for k, v in {"partition": partition, "time_min": time_min, "gpus_per_job": gpus_per_job,
                               "cpus_per_job": cpus_per_job}.items() if v is not None}
    try:
        result = run_benchmark(config, out, data=data, methods=method_list, seeds=seeds, max_steps=max_steps,
                               overrides={"train": {"device": device.value}} if device else None,
                               progress=not quiet, workers=workers, launcher=launcher.value.replace("-", "_"),
                               slurm=slurm or None, threads=threads)
    except BenchmarkInterrupted as exc:
        typer.echo(f"noisyseg: interrupted: {exc}", err=True)
        raise typer.Exit(130)
    typer.echo(result.table)
    typer.echo(f"\nresults.csv, summary.md and figures in {out}")


@app.command("methods")
def list_methods(
    params: bool = typer.Option(False, "--params", help="also list each method's parameters and defaults"),
) -> None:
    """List the available training methods (set parameters with method.params in a config).

    Example: noisyseg methods --params"""
    from .methods import available_methods, get_method_class

    for name in available_methods():
        cls = get_method_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:12s} {doc}")
        if params:
            for field, info in cls.Params.model_fields.items():
                typer.echo(f"{'':14s}{field} = {info.get_default(call_default_factory=True)!r}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
