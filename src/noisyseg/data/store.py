"""Training cases held as memory-mapped files instead of arrays in the process's memory.

Each case is read (and resampled) once, written as `.npy` files (image float32; labels in
the smallest unsigned integer type that holds their classes) and reopened with
`numpy.load(mmap_mode="r")`. A process then holds one case at a time in its own memory
while loading; afterwards the data are file pages that the kernel caches, shares with the
DataLoader workers and reclaims under pressure, rather than anonymous memory that grows
with the dataset.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from .case import Case


def compact_label(label: np.ndarray) -> np.ndarray:
    """`label` (class indices, and ``IGNORE_INDEX`` -1 for unannotated pixels) in the smallest
    integer type holding its values (unsigned when none is negative)."""
    if not label.size:
        return label.astype(np.uint8)
    low, top = int(label.min()), int(label.max())
    return label.astype(np.promote_types(np.min_scalar_type(low), np.min_scalar_type(top)), copy=False)


def in_memory(case: Case) -> Case:
    """The case with its arrays read into memory, labels as int64 (for code that writes or
    expects the readers' types)."""
    def lab(a):
        return None if a is None else np.asarray(a, dtype=np.int64)

    return replace(case, image=np.array(case.image), label=lab(case.label), clean_label=lab(case.clean_label))


class CaseStore:
    """A temporary folder of memory-mapped cases, removed by `close()` (or on leaving a
    `with` block).

    Args:
        parent: where the folder is made (None: the system's temporary folder, `TMPDIR`).
    """

    def __init__(self, parent: Path | str | None = None):
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="noisyseg-cases-", dir=parent))

    def put(self, case: Case) -> Case:
        """The case with its arrays replaced by read-only memory maps of files in the store."""
        folder = self.root / f"{len(list(self.root.iterdir())):05d}"
        folder.mkdir()

        def mapped(name: str, arr: np.ndarray | None) -> np.ndarray | None:
            if arr is None:
                return None
            np.save(folder / f"{name}.npy", arr)
            return np.load(folder / f"{name}.npy", mmap_mode="r")

        return replace(case, image=mapped("image", np.asarray(case.image, dtype=np.float32)),
                       label=mapped("label", None if case.label is None else compact_label(case.label)),
                       clean_label=mapped("clean_label",
                                          None if case.clean_label is None else compact_label(case.clean_label)))

    def put_all(self, loaders: Iterable[Callable[[], Case]]) -> list[Case]:
        """Load, store and release one case at a time."""
        return [self.put(load()) for load in loaders]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "CaseStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
