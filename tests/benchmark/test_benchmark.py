"""`noisyseg benchmark`: a tiny run end to end (files, honest metrics, resume), the table's
aggregation and bold/paper columns against hand-computed values, config errors, and every
shipped 3D config on small files written in its dataset's real format."""

from __future__ import annotations

import csv
import json
import math
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from noisyseg.benchmark import run_benchmark
from noisyseg.benchmark.spec import CLEAN_CEILING, BenchmarkSpec, level_key, load_benchmark
from noisyseg.benchmark.summary import aggregate, level_table
from noisyseg.errors import ConfigError
from noisyseg.io import read_file
from noisyseg.metrics import case_metrics

import format_files as w  # tests/data helper, on sys.path via tests/conftest.py

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_2D = {
    "data": {"patch_size": [96, 112], "batch_size": 2, "val_fraction": 0.2},
    "net": {"channels": [8, 16], "features": 8, "num_res_units": 0},
    "train": {"max_steps": 4, "val_every": 2, "log_every": 2, "ckpt_every": 2},
}


def write_config(path: Path, data: Path | None, **bench) -> Path:
    raw = {"benchmark": {"name": "tiny", "data": None if data is None else str(data),
                         "noise": {"protocol": "morph", "levels": [1.0], "params": {"size_range": [3, 5]}},
                         "methods": ["supervised", "clcs"], "seeds": [0],
                         "reported": {"1": {"clcs": {"dice": 90.0}}}, "reported_source": "a paper",
                         **bench}, **TINY_2D}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory, mni_small):
    root = tmp_path_factory.mktemp("bench")
    cfg = write_config(root / "tiny.yaml", mni_small)
    result = run_benchmark(cfg, root / "out", progress=False)
    return cfg, root / "out", result


def _rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_tiny_benchmark_writes_results_table_and_figures(tiny_bench, mni_small):
    _, out, result = tiny_bench
    rows = _rows(out)
    # (ceiling + 2 methods) x 3 test slices x 2 tissue classes
    assert len(rows) == 3 * 3 * 2
    assert {r["method"] for r in rows} == {"supervised (clean labels)", "supervised", "clcs"}
    assert {r["target"] for r in rows} == {"grey matter", "white matter"}
    summary = (out / "summary.md").read_text()
    assert "| supervised (clean labels) |" in summary and "paper dice" in summary and "**" in summary
    assert "| 90.00 |" in summary  # the published number sits in clcs's row
    for name in ("dice_1.png", "test_overlays_1.png", "training_labels_1.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["versions"]["torch"]
    assert result.table.count("\n") >= 4


def test_results_equal_metrics_recomputed_from_the_written_predictions(tiny_bench, mni_small):
    _, out, _ = tiny_bench
    row = next(r for r in _rows(out) if r["method"] == "clcs" and r["target"] == "white matter")
    pred = np.asarray(read_file(out / "runs" / "1" / "clcs" / "seed0" / "pred_test" / f"{row['case']}.png").array)
    truth = np.asarray(read_file(mni_small / "labelsTs" / f"{row['case']}.png").array)
    m = case_metrics(pred, truth, num_classes=3, spacing=None)
    for metric in ("dice", "iou", "hd95", "asd"):
        assert math.isclose(float(row[metric]), m[f"{metric}_2"], rel_tol=1e-9)


def test_rerun_skips_finished_runs_and_redoes_an_interrupted_one(tiny_bench):
    cfg, out, _ = tiny_bench
    kept = out / "runs" / "1" / "supervised" / "seed0" / "result.json"
    redo = out / "runs" / "1" / "clcs" / "seed0" / "result.json"
    before = json.loads(redo.read_text())
    mtime = kept.stat().st_mtime_ns
    redo.unlink()  # as if killed after its last checkpoint, before evaluation
    run_benchmark(cfg, out, progress=False)
    assert kept.stat().st_mtime_ns == mtime
    again = json.loads(redo.read_text())
    assert again["resumed"] is True and again["rows"] == before["rows"]
    # `seconds` is this invocation's time: the summary names the runs an earlier one finished
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["reused_runs"]) == set(summary["train_seconds"]) - {"1/clcs/seed0"}
    assert "reused" not in json.loads(kept.read_text())


def test_an_interrupted_run_is_not_recorded_as_finished_and_resumes(tmp_path, mni_small, monkeypatch):
    import functools

    import noisyseg.engine.trainer as trainer
    from noisyseg.benchmark import BenchmarkInterrupted

    cfg = write_config(tmp_path / "i.yaml", mni_small, methods=["supervised"], clean_ceiling=False)
    out = tmp_path / "out"
    real_train = trainer.train
    monkeypatch.setattr(trainer, "train", functools.partial(real_train, stop_at_step=2))  # as if killed at step 2
    with pytest.raises(BenchmarkInterrupted, match="resume"):
        run_benchmark(cfg, out, progress=False)
    run = out / "runs" / "1" / "supervised" / "seed0"
    assert not (run / "result.json").exists() and (run / "checkpoints" / "last.pt").is_file()
    monkeypatch.setattr(trainer, "train", real_train)
    run_benchmark(cfg, out, progress=False)
    record = json.loads((run / "result.json").read_text())
    assert record["resumed"] is True
    # the clean ceiling joins the same folder later, like a method: the finished run is reused
    with_clean = write_config(tmp_path / "c.yaml", mni_small, methods=["supervised"], clean_ceiling=True)
    result = run_benchmark(with_clean, out, progress=False)
    assert (out / "runs" / "clean" / CLEAN_CEILING / "seed0" / "result.json").is_file()
    assert json.loads((run / "result.json").read_text()) == record
    assert {r["method"] for r in result.rows} == {"supervised", "supervised (clean labels)"}


def test_a_different_benchmark_in_the_same_folder_is_refused(tiny_bench, tmp_path, mni_small):
    cfg, out, _ = tiny_bench
    with pytest.raises(ConfigError, match="different benchmark"):
        run_benchmark(cfg, out, overrides={"optim": {"lr": 0.5}}, progress=False)
    changed = write_config(tmp_path / "p.yaml", mni_small, method_params={"clcs": {"tau": 0.5}})
    with pytest.raises(ConfigError, match="method parameters"):
        run_benchmark(changed, out, progress=False)
    with pytest.raises(ConfigError, match="method parameters"):  # the same one line from a pool's job
        run_benchmark(changed, out, progress=False, workers=2)


def test_config_errors_are_one_clear_line(tmp_path, mni_small):
    bad = write_config(tmp_path / "a.yaml", mni_small, methods=["supervised", "coteachng"])
    with pytest.raises(ConfigError, match="did you mean 'coteaching'"):
        load_benchmark(bad)
    bad = write_config(tmp_path / "b.yaml", mni_small, seeeds=[0])
    with pytest.raises(ConfigError, match="benchmark.seeeds.*did you mean 'seeds'"):
        load_benchmark(bad)
    bad = write_config(tmp_path / "f.yaml", mni_small, noise={"protocol": "morf"})
    with pytest.raises(ConfigError, match="did you mean 'morph'"):
        load_benchmark(bad)
    nodata = write_config(tmp_path / "c.yaml", None)
    with pytest.raises(ConfigError, match="give --data"):
        load_benchmark(nodata)
    (tmp_path / "d.yaml").write_text("data: {batch_size: 2}\n")
    with pytest.raises(ConfigError, match="no 'benchmark:' mapping"):
        load_benchmark(tmp_path / "d.yaml")
    with pytest.raises(Exception, match="not found"):
        run_benchmark(write_config(tmp_path / "e.yaml", tmp_path / "missing"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _record(level, method, seed, dice_by_case):
    rows = [{"case": c, "target": t, "dice": d, "iou": d / (2 - d), "hd95": 10 * (1 - d), "asd": 1 - d}
            for c, per_t in dice_by_case.items() for t, d in per_t.items()]
    return {"level": level, "method": method, "seed": seed, "rows": rows}


def test_aggregate_averages_cases_then_classes_then_seeds():
    classes = ["background", "a", "b"]
    recs = [_record("0.2", "m", 0, {"c1": {"a": 0.8, "b": 0.6}, "c2": {"a": 0.6, "b": float("nan")}}),
            _record("0.2", "m", 1, {"c1": {"a": 0.9, "b": 0.7}, "c2": {"a": 0.7, "b": 0.5}})]
    st = aggregate(recs, ["mean"], classes)["0.2"]["m"]["mean"]["dice"]
    # seed 0: case means (0.7, 0.6) -> 0.65 (NaN left out); seed 1: (0.8, 0.6) -> 0.70
    assert st[0] == pytest.approx(0.675) and st[1] == pytest.approx(np.std([0.65, 0.70], ddof=1)) and st[2] == 2
    one = aggregate(recs[:1], ["mean"], classes)["0.2"]["m"]["mean"]["dice"]
    assert one[0] == pytest.approx(0.65) and one[1] == pytest.approx(0.05) and one[2] == 1  # std over cases
    # a seed without a value (every class absent) is left out; the std is the other seed's
    empty = _record("0.2", "m", 2, {"c1": {"a": float("nan"), "b": float("nan")}})
    for order in ([empty, recs[0]], [recs[0], empty]):
        st = aggregate(order, ["mean"], classes)["0.2"]["m"]["mean"]["dice"]
        assert st[0] == pytest.approx(0.65) and st[1] == pytest.approx(0.05) and st[2] == 1, order


def test_table_bolds_the_best_noisy_method_per_column_and_shows_paper_numbers():
    classes = ["background", "fg"]
    recs = [_record("clean", CLEAN_CEILING, 0, {"c": {"fg": 0.95}}),
            _record("0.4", "supervised", 0, {"c": {"fg": 0.70}}),
            _record("0.4", "clcs", 0, {"c": {"fg": 0.80}})]
    stats = aggregate(recs, ["mean"], classes)
    spec = BenchmarkSpec(methods=["supervised", "clcs"], reported={"0.4": {"clcs": {"dice": 81.5}}})
    table = level_table(stats["0.4"], spec, "0.4", ["mean"], stats["clean"][CLEAN_CEILING])
    lines = table.splitlines()
    ceiling, sup, clcs = lines[2], lines[3], lines[4]
    assert "**" not in ceiling and "95.00" in ceiling  # the ceiling is a reference, never bold
    assert "**80.00 ± 0.00**" in clcs and "| 70.00 ± 0.00 |" in sup  # higher Dice wins
    assert "**2.00 ± 0.00**" in clcs  # lower HD95 wins: 10 * (1 - 0.8)
    assert clcs.endswith("| 81.50 |") and sup.endswith("|  |")


# --------------------------------------------------------------------------- shipped 3D configs

SHAPE3 = (24, 24, 16)
_blob = w.blob_case


def write_la(root: Path) -> Path:
    return w.la_dataset(root, n_train=6)


def write_pancreas(root: Path) -> Path:
    ids = [f"image{i:04d}" for i in range(7)]
    for i, cid in enumerate(ids):
        img, lab = _blob(SHAPE3, 10 + i)
        w.h5(root / "Pancreas_h5" / f"{cid}_norm.h5", image=img, label=lab)
    (root / "train.list").write_text("\n".join(ids[:5]) + "\n")
    (root / "test.list").write_text("\n".join(ids[5:]) + "\n")
    return root


def write_brats(root: Path) -> Path:
    for i in range(6):
        cid = f"BraTS2021_{i:05d}"
        img, lab = _blob(SHAPE3, 20 + i)
        seg = lab.astype(np.uint8) * 2
        seg[lab.astype(bool) & (np.indices(SHAPE3)[0] < SHAPE3[0] // 2)] = 1
        seg[lab.astype(bool) & (np.indices(SHAPE3)[0] < SHAPE3[0] // 2 - 2)] = 4
        for k, mod in enumerate(("t1", "t1ce", "t2", "flair")):
            w.nifti(root / cid / f"{cid}_{mod}.nii.gz", img + k)
        w.nifti(root / cid / f"{cid}_seg.nii.gz", seg)
    return root


WRITERS = {"la": write_la, "pancreas": write_pancreas, "brats2021": write_brats}
TINY_3D = {"data": {"patch_size": [16, 16, 16], "batch_size": 1, "val_fraction": 0.2},
           "net": {"arch": "unet", "channels": [4, 8], "features": 4, "num_res_units": 0},
           "optim": {"name": "adam", "lr": 0.01},
           "train": {"val_every": 2, "ckpt_every": 2, "log_every": 1, "sw_stride": None, "sw_mode": "gaussian",
                     "amp": False}}
SMALL_SOURCE = {"noise": {"source_overrides": {"data": {"patch_size": [16, 16, 16], "batch_size": 1},
                                               "net": {"arch": "unet", "channels": [4, 8], "features": 4},
                                               "train": {"max_steps": 2, "val_every": 2, "sw_stride": None}},
                          "params": {"steps": 2}}}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["la_morph_cpu", "la_sfda_cpu", "pancreas_morph", "pancreas_sfda",
                                  "brats2021_morph", "brats2021_sfda"])
def test_shipped_3d_configs_run_on_files_in_their_real_format(name, tmp_path):
    data = WRITERS[name.split("_")[0]](tmp_path / "data")
    sfda = "sfda" in name
    res = run_benchmark(CONFIGS / f"{name}.yaml", tmp_path / "out", data=str(data), methods=["supervised"],
                        max_steps=2, overrides=TINY_3D, benchmark_overrides=SMALL_SOURCE if sfda else None,
                        progress=False)
    spec, _ = load_benchmark(CONFIGS / f"{name}.yaml", data=str(data))
    rows = _rows(tmp_path / "out")
    n_test = 2 if name.startswith("pancreas") else 1  # pancreas ships test.list; the others hold 20% out
    targets = {"WT", "TC", "ET"} if name.startswith("brats") else {"left atrium" if name.startswith("la") else
                                                                    "pancreas"}
    assert {r["target"] for r in rows} >= targets
    assert len({r["case"] for r in rows}) == n_test
    assert spec.convention == "medpy" and "paper" in (tmp_path / "out" / "summary.md").read_text()
    report = list(csv.DictReader((tmp_path / "out" / "data" / f"noisy_{level_key(spec.noise.levels[0])}"
                                  / "noise_report.csv").open()))
    assert sum(int(r["corrupted"]) for r in report) >= 1
    if sfda:
        assert (tmp_path / "out" / "data" / "source_scanner_shift" / "scanner_shift.json").is_file()
    assert res.table


@pytest.mark.parametrize("name", ["msd_heart", "msd_brain", "promise12", "kvasir", "demo", "la_morph", "la_sfda"])
def test_other_shipped_configs_validate(name, mni_small):
    """The 2D configs and the paper-scale LA ones (their _cpu twins run above with the same
    benchmark section)."""
    spec, cfg = load_benchmark(CONFIGS / f"{name}.yaml", data=str(mni_small))
    run_levels = {level_key(lv) for lv in spec.noise.levels}
    assert set(spec.reported) <= run_levels, "published numbers filed under a level the config does not run"
    if name.startswith("la_"):
        cpu, _ = load_benchmark(CONFIGS / f"{name}_cpu.yaml", data=str(mni_small))
        assert spec.noise.protocol == cpu.noise.protocol and spec.split == cpu.split
        assert cfg.net.arch == "vnet" and cfg.train.sw_stride == [18, 18, 4] and cfg.train.max_steps == 6000
    elif name != "demo":
        assert spec.noise.protocol == "l2b" and spec.noise.levels == [0.2, 0.4, 0.6]


def test_several_levels_get_a_dice_against_level_figure(tmp_path):
    from noisyseg.benchmark.summary import write_figures
    from noisyseg.data.case import Dataset

    classes = ["background", "fg"]
    recs = [_record(lv, m, 0, {"c": {"fg": d}}) for lv, m, d in
            (("0.2", "supervised", 0.8), ("0.4", "supervised", 0.6), ("0.2", "clcs", 0.85), ("0.4", "clcs", 0.8))]
    stats = aggregate(recs, ["mean"], classes)
    ds = Dataset(root=tmp_path, layout="decathlon", spatial_dims=2, class_names=classes, label_values=[0, 1],
                 modalities=["MRI"], train=[])
    spec = BenchmarkSpec(methods=["supervised", "clcs"], clean_ceiling=False)
    written = write_figures(tmp_path, spec, stats, ds, {}, [])
    names = sorted(p.name for p in written)
    assert names == ["dice_0.2.png", "dice_0.4.png", "dice_vs_level.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_paired_table_against_hand_computed_differences_and_recovery():
    from noisyseg.benchmark.spec import BenchmarkSpec
    from noisyseg.benchmark.summary import paired_table

    def rec(level, method, seed, dice_by_case):
        return {"level": level, "method": method, "seed": seed,
                "rows": [{"case": c, "target": t, "dice": v} for c, vals in dice_by_case.items()
                         for t, v in zip(("a", "b"), vals)]}

    records = [rec("clean", "supervised_clean", 0, {"x": (0.9, 0.9), "y": (0.9, 0.9)}),
               rec("clean", "supervised_clean", 1, {"x": (1.0, 1.0), "y": (0.8, 0.8)}),
               rec("0.5", "supervised", 0, {"x": (0.5, 0.7), "y": (0.6, float("nan"))}),  # case y: class b undefined
               rec("0.5", "supervised", 1, {"x": (0.7, 0.7), "y": (0.5, 0.5)}),
               rec("0.5", "clcs", 0, {"x": (0.8, 0.8), "y": (0.5, 0.5)}),
               rec("0.5", "clcs", 1, {"x": (0.9, 0.9), "y": (0.6, 0.6)})]
    spec = BenchmarkSpec(methods=["supervised", "clcs"], seeds=[0, 1])
    table = paired_table(records, spec, "0.5", ["bg", "a", "b"])
    # seed 0: clcs 0.65, supervised (0.6 + 0.6)/2 = 0.6 → +0.05, clean 0.9 → recovered 0.05/0.3
    # seed 1: clcs 0.75, supervised 0.6 → +0.15, clean 0.9 → recovered 0.15/0.3
    row = table.splitlines()[2]
    d = np.array([0.05, 0.15])
    assert f"+{100 * d.mean():.2f} ± {100 * d.std(ddof=1):.2f}" in row
    assert "3/4" in row  # x wins both seeds, y loses seed 0 (0.5 < 0.6) and wins seed 1
    assert f"+{np.mean(d / 0.3):.2f}" in row


def test_parallel_and_submitit_launches_give_the_results_of_one_process(tmp_path, mni_small):
    cfg = write_config(tmp_path / "p.yaml", mni_small, methods=["gce"])  # + the clean ceiling
    run_benchmark(cfg, tmp_path / "seq", progress=False, threads=1)
    run_benchmark(cfg, tmp_path / "pool", progress=False, workers=2, threads=1)
    run_benchmark(cfg, tmp_path / "sub", progress=False, launcher="submitit_local", threads=1)
    seq = _rows(tmp_path / "seq")
    assert len(seq) == 2 * 3 * 2
    assert _rows(tmp_path / "pool") == seq and _rows(tmp_path / "sub") == seq
    assert list((tmp_path / "sub" / "submitit").iterdir())  # the jobs went through submitit


def test_two_launches_on_one_folder_train_each_run_once(tmp_path, mni_small):
    import os
    import subprocess
    import sys

    cfg = write_config(tmp_path / "l.yaml", mni_small, methods=["supervised"])
    cmd = [sys.executable, "-m", "noisyseg.cli", "benchmark", "--config", str(cfg), "--out", str(tmp_path / "out"),
           "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-1500:] for r in results]
    runs = sorted((tmp_path / "out" / "runs").glob("*/*/seed0"))
    assert len(runs) == 2
    for run in runs:  # one training each: one TensorBoard event file, not two writers in one folder
        assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1, run
    assert results[0][0].split("results.csv")[0] == results[1][0].split("results.csv")[0]  # the same table


def _other_launch_holding(lock: Path, until: list[Path], timeout: float,
                          on_release: Callable[[], None]) -> threading.Thread:
    """A thread standing for another launch: it takes `lock` and holds it until every `until` exists or
    `timeout` seconds pass, and calls `on_release()` just before it lets go. Returns the started
    thread once the lock is held."""
    from noisyseg.benchmark.launch import file_lock

    held = threading.Event()

    def hold() -> None:
        with file_lock(lock):
            held.set()
            deadline = time.monotonic() + timeout
            while not all(p.is_file() for p in until) and time.monotonic() < deadline:
                time.sleep(0.05)
            on_release()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(30)
    return thread


def test_a_one_worker_launch_trains_the_other_runs_while_another_launch_holds_one(tmp_path, mni_small):
    """Seed 0 locked by another launch: this launch trains seed 1 meanwhile, then waits for seed 0."""
    cfg = write_config(tmp_path / "l.yaml", mni_small, methods=["supervised"], seeds=[0, 1], clean_ceiling=False)
    out = tmp_path / "out"
    runs = out / "runs" / "1" / "supervised"
    seed1_done_while_held = []

    def on_release() -> None:
        seed1_done_while_held.append((runs / "seed1" / "result.json").is_file())

    other = _other_launch_holding(runs / "seed0.lock", [runs / "seed1" / "result.json"], 90, on_release)
    result = run_benchmark(cfg, out, progress=False)
    other.join()
    assert seed1_done_while_held == [True]  # before: the launch waited on seed 0 and seed 1 never started
    assert {r["seed"] for r in _rows(out)} == {"0", "1"} and len(result.rows) == len(_rows(out))


def test_a_pool_launch_trains_the_free_runs_and_the_held_one_once_it_is_let_go(tmp_path, mni_small):
    """Two workers, seeds 0-2, seed 0 locked by another launch: seeds 1 and 2 are trained while
    it holds seed 0, and seed 0 after (that the workers take the free runs at once rather than
    one waiting on the lock: tests/benchmark/test_pool_busy.py)."""
    cfg = write_config(tmp_path / "p.yaml", mni_small, methods=["supervised"], seeds=[0, 1, 2], clean_ceiling=False)
    out = tmp_path / "out"
    runs = out / "runs" / "1" / "supervised"
    seen = {}

    def on_release() -> None:
        seen["seed0_free_while_held"] = not (runs / "seed0" / "result.json").is_file()
        seen["seeds_1_2_done_while_held"] = all((runs / f"seed{k}" / "result.json").is_file() for k in (1, 2))

    other = _other_launch_holding(runs / "seed0.lock", [runs / f"seed{k}" / "result.json" for k in (1, 2)], 180,
                                  on_release)
    result = run_benchmark(cfg, out, progress=False, workers=2, threads=1)
    other.join()
    assert seen == {"seed0_free_while_held": True, "seeds_1_2_done_while_held": True}
    assert {r["seed"] for r in _rows(out)} == {"0", "1", "2"} and len(result.rows) == len(_rows(out))


def test_slurm_launch_submits_one_array_with_the_resources_asked(tmp_path, mni_small, monkeypatch):
    """SLURM itself is absent here: a stand-in for submitit's AutoExecutor records what the
    benchmark asks for and runs the jobs in this process."""
    import submitit

    seen: dict = {}

    class Done:
        def __init__(self, value):
            self.value, self.job_id = value, "1_0"

        def result(self):
            return self.value

    class FakeExecutor:
        def __init__(self, folder, cluster):
            seen["cluster"], seen["folder"] = cluster, str(folder)

        def update_parameters(self, **kw):
            seen.update(kw)

        def map_array(self, fn, jobs):
            seen["n_jobs"] = len(jobs)
            return [Done(fn(j)) for j in jobs]

    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    cfg = write_config(tmp_path / "s.yaml", mni_small, methods=["supervised"], clean_ceiling=False,
                       slurm={"partition": "from-config", "max_parallel": 4, "additional": {"account": "lab"}})
    with pytest.raises(ConfigError, match="partition"):
        run_benchmark(write_config(tmp_path / "n.yaml", mni_small), tmp_path / "none", launcher="slurm",
                      progress=False)
    assert not (tmp_path / "none").exists()  # refused before anything was written
    run_benchmark(cfg, tmp_path / "out", launcher="slurm", slurm={"partition": "gpu", "time_min": 30}, progress=False)
    assert seen["cluster"] == "slurm" and seen["n_jobs"] == 1
    assert seen["slurm_partition"] == "gpu" and seen["timeout_min"] == 30  # the command line wins
    assert seen["slurm_array_parallelism"] == 4 and seen["slurm_account"] == "lab" and seen["gpus_per_node"] == 1
    assert (tmp_path / "out" / "runs" / "1" / "supervised" / "seed0" / "result.json").is_file()


def test_a_run_trained_under_other_defaults_is_refused(tiny_bench, tmp_path):
    """The config's method_params are the same, but a default changed since the run was trained."""
    cfg, shared_out, _ = tiny_bench
    out = tmp_path / "out"
    shutil.copytree(shared_out, out)
    done = out / "runs" / "1" / "clcs" / "seed0" / "result.json"
    record = json.loads(done.read_text())
    assert record["method_resolved_params"]["dice_pixels"] == "all"  # today's default, written by the run
    older = {**record, "method_resolved_params": {**record["method_resolved_params"], "dice_pixels": "clean"}}
    done.write_text(json.dumps(older))
    with pytest.raises(ConfigError, match="dice_pixels: 'clean' then, 'all' now"):
        run_benchmark(cfg, out, progress=False)
    legacy = {k: v for k, v in record.items() if k != "method_resolved_params"}  # written before the check
    done.write_text(json.dumps(legacy))
    result = run_benchmark(cfg, out, progress=False)
    assert {r["method"] for r in result.rows} >= {"clcs"}


def test_changing_the_tested_checkpoint_tests_finished_runs_again_without_training(tiny_bench, tmp_path):
    """best.pt of one run is overwritten with zeroed weights (background everywhere: Dice 0), so the
    rows tell which checkpoint was tested."""
    import torch

    from noisyseg.engine.checkpoint import load_checkpoint, save_checkpoint

    cfg, shared_out, _ = tiny_bench
    out = tmp_path / "out"
    shutil.copytree(shared_out, out)
    run = out / "runs" / "1" / "supervised" / "seed0"
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    best["method"] = {k: torch.zeros_like(v) for k, v in best["method"].items()}
    save_checkpoint(run / "checkpoints" / "best.pt", best)
    last_mtime = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    trained_s = json.loads((run / "result.json").read_text())["train_seconds"]

    def dice_of(result) -> list[float]:
        return [r["dice"] for r in result.rows if r["method"] == "supervised"]

    as_last = run_benchmark(cfg, out, benchmark_overrides={"checkpoint": "last"}, progress=False)
    record = json.loads((run / "result.json").read_text())
    assert record["checkpoint"] == "last" and record["train_seconds"] == trained_s
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == last_mtime  # not trained again
    assert "tested with each run's `last` checkpoint" in (out / "summary.md").read_text()
    assert max(dice_of(as_last)) > 0.0
    as_best = run_benchmark(cfg, out, progress=False)  # back to the config's 'best': tested again
    assert json.loads((run / "result.json").read_text())["checkpoint"] == "best"
    assert dice_of(as_best) == [0.0] * len(dice_of(as_last))
