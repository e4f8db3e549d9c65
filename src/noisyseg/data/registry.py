"""Open any supported dataset folder by detecting its layout, and check it before training.

Each reader module declares its layout once (``LAYOUT``: name, detect, read, what the folder
holds); :data:`LAYOUTS` is the one ordered list, tried first to last, and :data:`READERS` and the
error text for an unknown folder derive from it. The order: ``decathlon`` (``dataset.json`` or
``imagesTr/``: MSD, nnU-Net raw), ``acdc_h5`` (SSL4MIS's ACDC h5 slices and volumes), ``acdc``
(the original ACDC release), ``h5`` (LA, Pancreas-CT), ``brats`` (BraTS 2021 case folders),
``promise12`` (MetaImage ``CaseNN.mhd``), ``kvasir`` (``images/`` and ``masks/``). A new reader is
one module with a ``LAYOUT`` and one entry in :data:`LAYOUTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from . import acdc, brats, decathlon, h5cases, kvasir, promise12
from .case import Dataset, Layout

LAYOUTS: tuple[Layout, ...] = (
    decathlon.LAYOUT,
    acdc.ACDC_H5_LAYOUT,
    acdc.ACDC_LAYOUT,
    h5cases.LAYOUT,
    brats.LAYOUT,
    promise12.LAYOUT,
    kvasir.LAYOUT,
)
"""Every dataset layout, in detection order (the first whose ``detect`` accepts a folder wins)."""

READERS: dict[str, Callable[..., Dataset]] = {layout.name: layout.read for layout in LAYOUTS}


def _expected() -> str:
    parts = [layout.expects for layout in LAYOUTS]
    return ", ".join(parts[:-1]) + ", or " + parts[-1] if len(parts) > 1 else parts[0]


def detect_layout(path: Path | str) -> str:
    """The layout name of a dataset folder (a key of READERS).

    Raises:
        DataError: the folder is missing, empty, or of no known layout.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (give the dataset folder, not a file)")
    if not any(not p.name.startswith(".") for p in root.iterdir()):
        raise DataError(f"{root}: dataset folder is empty")
    for layout in LAYOUTS:
        if layout.detect(root):
            return layout.name
    raise DataError(f"{root}: no known dataset layout (expected {_expected()})")


def open_dataset(path: Path | str, *, clean_cases_file: Path | str | None = None) -> Dataset:
    """Open a dataset folder in any supported layout, detected from its contents.

    Args:
        path: the dataset folder.
        clean_cases_file: optional text file, one trusted training case id per line
            (for methods that need a small clean set); unknown ids raise DataError.
    Returns:
        a Dataset whose cases are read and validated when loaded.
    Raises:
        DataError: missing or empty folder, unknown layout, or a reader's own checks.
    """
    layout = detect_layout(path)
    return READERS[layout](Path(path), clean_cases_file=clean_cases_file)


def validate_dataset(ds: Dataset, progress: bool = True) -> dict[str, int]:
    """Load every case once so that bad files fail before training starts.

    Args:
        ds: an opened dataset.
        progress: show a tqdm progress bar.
    Returns:
        {"train": n, "test": n} cases checked.
    Raises:
        DataError: empty training set, or the first case that fails to load (naming its
            file), or a case whose channels, dimensions or classes disagree with the dataset.
    """
    if not ds.train:
        raise DataError(f"{ds.root}: the training set is empty")
    from tqdm.auto import tqdm

    refs = ds.train + ds.val + ds.test
    for ref in tqdm(refs, desc=f"checking {ds.root.name}", unit="case", disable=not progress):
        case = ref.load()
        if case.image.ndim != ds.spatial_dims + 1 or case.image.shape[0] != ds.in_channels:
            raise DataError(
                f"{case.image_path}: image shape {case.image.shape}; expected {ds.in_channels} channel(s) "
                f"and {ds.spatial_dims} spatial axes"
            )
        for lab in (case.label, case.clean_label):
            if lab is not None and lab.size and int(lab.max()) >= ds.num_classes:
                raise DataError(f"{case.image_path}: label class {int(lab.max())} >= {ds.num_classes} classes")
    return {"train": len(ds.train), "test": len(ds.test)}
