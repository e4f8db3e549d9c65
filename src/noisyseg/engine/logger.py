"""Training logs: a wide CSV (one row per logged step) and TensorBoard scalars."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..io import atomic_path


class RunLogger:
    """Keeps logged rows in memory and rewrites `path` atomically on each flush, so the CSV
    is always complete and gains columns when a method starts logging new scalars.

    On resume, rows after the checkpointed step are dropped: they belong to steps that
    will be run again.
    """

    def __init__(self, path: Path, tb_dir: Path | None, resume_step: int | None = None):
        self.path = path
        self.rows: list[dict[str, float]] = []
        if resume_step is not None and path.is_file():
            with path.open() as fh:
                for row in csv.DictReader(fh):
                    if int(float(row["step"])) <= resume_step:  # steps done before the checkpoint
                        self.rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
        self.tb = None
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(tb_dir))

    def log(self, step: int, values: dict[str, float]) -> None:
        vals = {k: float(v) for k, v in values.items()}
        if self.rows and self.rows[-1]["step"] == step:
            self.rows[-1].update(vals)  # validation scores join the step's training row
        else:
            self.rows.append({"step": float(step), **vals})
        if self.tb is not None:
            for k, v in values.items():
                if math.isfinite(float(v)):
                    self.tb.add_scalar(k, float(v), step)

    def flush(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: (int(v) if k == "step" else v) for k, v in row.items()})
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        if self.tb is not None:
            self.tb.close()


class TextLog:
    """``train.log``: the run's console messages and every warning raised while it trains, one
    timestamped line each, appended (a resumed run continues the file).

    Lines written before `open` (data loading happens before the run folder exists) are kept
    and written first. Warnings still reach the console as before.
    """

    def __init__(self):
        self.path: Path | None = None
        self._pending: list[str] = []
        self._old_showwarning = None

    def __enter__(self) -> TextLog:
        import warnings

        self._old_showwarning = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            self._old_showwarning(message, category, filename, lineno, file, line)
            self.write(f"warning: {category.__name__}: {message} ({Path(filename).name}:{lineno})")

        warnings.showwarning = show
        return self

    def __exit__(self, *exc) -> None:
        import warnings

        warnings.showwarning = self._old_showwarning

    def open(self, path: Path) -> None:
        """Start appending to `path`, with the lines written so far."""
        self.path = Path(path)
        pending, self._pending = self._pending, []
        for line in pending:
            self._append(line)

    def write(self, message: str) -> None:
        import time

        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        if self.path is None:
            self._pending.append(line)
        else:
            self._append(line)

    def _append(self, line: str) -> None:
        assert self.path is not None
        with self.path.open("a") as fh:
            fh.write(line + "\n")
