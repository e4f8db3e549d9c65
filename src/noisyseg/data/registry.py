"""Open any supported dataset folder by detecting its layout, and check it before training.

Layouts, tried in this order:

- ``decathlon``: ``dataset.json`` or ``imagesTr/`` / ``imagesTs/`` (MSD, nnU-Net raw);
- ``acdc_h5``: ``data/slices/*.h5`` with ``train_slices.list``, or ``data/<frame>.h5`` volumes
  beside ``train.list`` / ``val.list`` / ``test.list`` (ACDC as SSL4MIS distributes it);
- ``acdc``: ``patientNNN/patientNNN_frameMM.nii.gz`` folders (the original ACDC release);
- ``h5``: ``2018LA_Seg_Training Set/`` or ``Pancreas_h5/`` or a ``train.list`` beside
  h5 files (LA, Pancreas-CT);
- ``brats``: ``BraTS2021_XXXXX/`` case folders holding ``*_flair.nii.gz`` ...;
- ``promise12``: MetaImage ``CaseNN.mhd`` images with ``CaseNN_segmentation.mhd`` masks
  (PROMISE12 prostate MRI), optionally in ``TrainingData_*/`` and ``TestData/`` subfolders;
- ``kvasir``: ``images/`` and ``masks/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from .acdc import is_acdc_h5_layout, is_acdc_nifti_layout, read_acdc_h5, read_acdc_nifti
from .brats import is_brats_case, read_brats
from .case import Dataset
from .decathlon import read_decathlon
from .h5cases import is_h5_layout, read_h5_dataset
from .kvasir import is_kvasir_layout, read_kvasir
from .promise12 import is_promise12_layout, read_promise12

READERS: dict[str, Callable[..., Dataset]] = {
    "decathlon": read_decathlon,
    "acdc_h5": read_acdc_h5,
    "acdc": read_acdc_nifti,
    "h5": read_h5_dataset,
    "brats": read_brats,
    "promise12": read_promise12,
    "kvasir": read_kvasir,
}


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
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DataError(f"{root}: dataset folder is empty")
    if (root / "dataset.json").is_file() or (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        return "decathlon"
    if is_acdc_h5_layout(root):
        return "acdc_h5"
    if is_acdc_nifti_layout(root):
        return "acdc"
    if is_h5_layout(root):
        return "h5"
    if any(is_brats_case(p) for p in entries if p.is_dir()):
        return "brats"
    if is_promise12_layout(root):
        return "promise12"
    if is_kvasir_layout(root):
        return "kvasir"
    raise DataError(
        f"{root}: no known dataset layout (expected imagesTr/+labelsTr/ or dataset.json (Decathlon), "
        "data/slices/ or data/*.h5 with train_slices.list/val.list (ACDC h5), patientNNN/ frame folders (ACDC), "
        "train.list with h5 files (LA/Pancreas), BraTS case folders, CaseNN.mhd + CaseNN_segmentation.mhd "
        "(PROMISE12), or images/+masks/ (Kvasir))"
    )


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
