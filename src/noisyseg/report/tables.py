"""Plain-text and Markdown tables of metric summaries."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _cell(mean: float, std: float | None = None, digits: int = 2, scale: float = 1.0) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    if std is not None and math.isfinite(std):
        s += f" ± {std * scale:.{digits}f}"
    return s


def format_summary(summary: Mapping) -> str:
    """One line per metric column of an evaluate_folders summary: mean ± std (n)."""
    lines = []
    unit = summary.get("units", {}).get("hd95")
    if unit == "pixel":
        lines.append("HD95 and ASD in pixels: the data carries no voxel spacing")
    for col, stats in summary.get("metrics", summary).items():
        if isinstance(stats, Mapping) and "mean" in stats:
            lines.append(f"{col:12s} {_cell(stats['mean'], stats.get('std'), 4)}  (n={stats.get('n')})")
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """A Markdown table from string cells."""
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)
