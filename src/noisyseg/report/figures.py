"""Figures: training curves and image / label overlays (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Save atomically as PNG and close."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def read_log(path: Path) -> dict[str, np.ndarray]:
    """Columns of a training CSV as float arrays (NaN where a row lacks the value)."""
    with Path(path).open() as fh:
        rows = list(csv.DictReader(fh))
    keys = rows[0].keys() if rows else []
    return {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]) for k in keys}


def plot_training_curves(log_csv: Path, out: Path, groups: Sequence[str] | None = None) -> Path:
    """One panel per group of logged scalars (loss terms, validation Dice, method scalars
    grouped by their prefix before '/'), against the step."""
    plt = _plt()
    log = read_log(log_csv)
    step = log.pop("step", np.array([]))
    log.pop("time/step_s", None)
    panels: dict[str, list[str]] = {}
    for k in log:
        panels.setdefault(k.split("/")[0] if "/" in k else "loss", []).append(k)
    if groups is not None:
        panels = {g: panels[g] for g in groups if g in panels}
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for k in keys:
            ok = np.isfinite(log[k])
            ax.plot(step[ok], log[k][ok], label=k, marker="." if ok.sum() < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        if len(keys) <= 8:
            ax.legend(fontsize=7)
    return save_figure(fig, Path(out))


def to_display_slice(image: np.ndarray, labels: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """For a 3D case take the axial slice (last axis) with the most foreground in labels[0];
    image (C, *S) → (H, W) first channel, labels → (H, W)."""
    img = image[0]
    if img.ndim == 3:
        z = int(np.argmax((labels[0] > 0).sum(axis=(0, 1))))
        return img[..., z], [l[..., z] for l in labels]
    return img, list(labels)


def plot_overlays(rows: Sequence[tuple[str, np.ndarray, dict[str, np.ndarray]]], out: Path,
                  num_classes: int) -> Path:
    """A grid: one row per case, columns = image then one contour overlay per named label map.
    Ignored (unannotated, -1) pixels are shaded white and hatched.

    Args:
        rows: (case id, image (C, *S), {column title: label map (*S)}) per row.
    """
    plt = _plt()
    ncol = 1 + max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.4 * ncol, 2.4 * len(rows)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for r, (cid, image, maps) in enumerate(rows):
        img, labs = to_display_slice(image, list(maps.values()))
        axes[r, 0].imshow(img.T if image.ndim == 4 else img, cmap="gray")
        axes[r, 0].set_ylabel(cid, fontsize=7)
        for c, (title, lab) in enumerate(zip(maps.keys(), labs), start=1):
            ax = axes[r, c]
            ax.imshow(img.T if image.ndim == 4 else img, cmap="gray")
            lab_d = lab.T if image.ndim == 4 else lab
            ignored = lab_d < 0
            if ignored.any():
                ax.imshow(np.ma.masked_where(~ignored, np.ones(ignored.shape)), cmap="gray", vmin=0, vmax=1,
                          alpha=0.45)
                ax.contourf(ignored.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
                ax.text(0.02, 0.02, "hatched: ignore", transform=ax.transAxes, fontsize=5, color="white")
            for k in range(1, num_classes):
                if (lab_d == k).any():
                    ax.contour(lab_d == k, levels=[0.5], colors=[colors(k - 1)], linewidths=0.8)
            if r == 0:
                ax.set_title(title, fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(out))


def plot_metric_bars(names: Sequence[str], means: Sequence[float], stds: Sequence[float], out: Path,
                     ylabel: str = "Dice") -> Path:
    """Bar chart of one metric per method with error bars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3))
    ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    return save_figure(fig, Path(out))
