"""benchmarks/combine_results.py: later files win, runs regroup, tables by hand."""

import csv
import subprocess
import sys
from pathlib import Path

import bench_script

SCRIPT = bench_script.BENCHMARKS / "combine_results.py"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "acdc_cpu.yaml"
COLUMNS = ["level", "method", "seed", "case", "target", "dice", "iou", "hd95", "asd"]


def _module():
    return bench_script.load("combine_results")


def _write(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for level, method, seed, case, dice in rows:
            w.writerow([level, method, seed, case, "organ", dice, dice, 1.0, 0.5])
    return path


def test_later_file_wins_and_runs_regroup(tmp_path):
    a = _write(tmp_path / "a.csv", [("0.5", "supervised", 0, "c1", 0.5), ("0.5", "supervised", 0, "c2", 0.7),
                                   ("0.5", "clcs", 0, "c1", 0.1)])
    b = _write(tmp_path / "b.csv", [("0.5", "clcs", 0, "c1", 0.6), ("0.5", "clcs", 1, "c1", 0.8),
                                   ("clean", "supervised (clean labels)", 0, "c1", 0.9)])
    mod = _module()
    records = {(r["level"], r["method"], r["seed"]): r for r in mod.records_of(mod.read_rows([a, b]))}
    assert set(records) == {("0.5", "supervised", 0), ("0.5", "clcs", 0), ("0.5", "clcs", 1),
                            ("clean", "supervised_clean", 0)}
    assert [r["dice"] for r in records[("0.5", "clcs", 0)]["rows"]] == [0.6]  # b's row replaced a's
    assert records[("0.5", "clcs", 0)]["source"] == [str(b)]
    assert len(records[("0.5", "supervised", 0)]["rows"]) == 2


def test_drop_leaves_out_one_method_of_one_file(tmp_path):
    a = _write(tmp_path / "a.csv", [("0.5", "l2b", 1, "c1", 0.1), ("0.5", "clcs", 1, "c1", 0.5)])
    b = _write(tmp_path / "b.csv", [("0.5", "l2b", 0, "c1", 0.6)])
    mod = _module()
    records = {(r["method"], r["seed"]): r for r in mod.records_of(mod.read_rows([a, b], {("l2b", str(a))}))}
    assert set(records) == {("clcs", 1), ("l2b", 0)}  # a's l2b row gone, a's clcs and b's l2b kept


def test_tables_by_hand(tmp_path):
    # seed 0: supervised 0.6 (mean of cases 0.5, 0.7), clcs 0.7; seed 1: supervised 0.5, clcs 0.8
    a = _write(tmp_path / "a.csv", [("0.5", "supervised", 0, "c1", 0.5), ("0.5", "supervised", 0, "c2", 0.7),
                                   ("0.5", "supervised", 1, "c1", 0.5), ("0.5", "supervised", 1, "c2", 0.5),
                                   ("clean", "supervised (clean labels)", 0, "c1", 0.9),
                                   ("clean", "supervised (clean labels)", 0, "c2", 0.9),
                                   ("clean", "supervised (clean labels)", 1, "c1", 0.9),
                                   ("clean", "supervised (clean labels)", 1, "c2", 0.9)])
    b = _write(tmp_path / "b.csv", [("0.5", "clcs", 0, "c1", 0.7), ("0.5", "clcs", 0, "c2", 0.7),
                                   ("0.5", "clcs", 1, "c1", 0.8), ("0.5", "clcs", 1, "c2", 0.8)])
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(SCRIPT), "--config", str(CONFIG), "--out", str(out), "--pixels",
                    "--classes", "background,organ", str(a), str(b)], check=True, capture_output=True)
    text = (out / "summary.md").read_text()
    assert "| supervised | 55.00 ± 7.07 |" in text  # seeds 60 and 50
    assert "| clcs | **75.00 ± 7.07** |" in text
    assert "HD95 (px)" in text
    # Δ per seed +10, +30 → +20 ± 14.14; cases won 3 of 4; recovered (0.1/0.3 + 0.3/0.4) / 2
    assert "| clcs | +20.00 ± 14.14 | 3/4 | +0.54 |" in text
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and {r["source"] for r in rows if r["method"] == "clcs"} == {str(b)}
