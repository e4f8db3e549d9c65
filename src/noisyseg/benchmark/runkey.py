"""The key of one training run of a benchmark and its folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunKey:
    """One training run of the benchmark: noise level, method and seed."""

    level: str
    method: str
    seed: int

    def folder(self, out: Path) -> Path:
        """``OUT/runs/<level>/<method>/seed<k>``."""
        return out / "runs" / self.level / self.method / f"seed{self.seed}"
