"""The in-memory data model every reader produces: cases and datasets.

Readers (Decathlon / nnU-Net, ACDC, LA/Pancreas h5, BraTS, PROMISE12, Kvasir) differ only in
how they find files; each declares its :class:`Layout` once, and they all return a
:class:`Dataset` of lazily loaded :class:`Case` objects, already validated, with labels mapped
to contiguous class indices 0..K-1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, did_you_mean

IGNORE_INDEX = -1
"""Class index of unannotated pixels (nnU-Net v2's ``"ignore"`` label) in loaded labels:
kept out of ``num_classes`` and excluded from every loss, selection, noise, audit and metric."""


@dataclass(frozen=True)
class Layout:
    """A dataset layout, declared once by its reader module as ``LAYOUT``.

    Attributes:
        name: the layout name (``Dataset.layout``, a key of ``noisyseg.data.registry.READERS``).
        detect: ``detect(root) -> bool``, whether a (non-empty) folder is in this layout.
        read: ``read(root, *, clean_cases_file=None) -> Dataset``.
        expects: what the folder holds, for the error text of an unknown layout.
    """

    name: str
    detect: Callable[[Path], bool]
    read: Callable[..., Dataset]
    expects: str


@dataclass
class Case:
    """One validated case.

    Attributes:
        id: case id (file name without extension, or the case folder name).
        image: float32 array (C, *spatial), normalised per modality.
        label: int64 array (*spatial) of class indices 0..K-1 (the given, possibly noisy,
            label; ``IGNORE_INDEX`` where the dataset declares an ignore label), or None for
            unlabelled images.
        clean_label: int64 array (*spatial) of the known clean label (benchmarks only).
        spacing: voxel size in mm per spatial axis.
        affine: 4x4 voxel-to-world matrix of the source image.
        image_path: the file the image came from (for messages and outputs).
    """

    id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, ...]
    affine: np.ndarray
    image_path: Path
    clean_label: np.ndarray | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[1:])


@dataclass
class CaseRef:
    """A case that is read from disk only when `load()` is called."""

    id: str
    loader: Callable[[], Case]
    path: Path

    def load(self) -> Case:
        return self.loader()


@dataclass
class Dataset:
    """A dataset in any supported layout, seen through one interface.

    Attributes:
        root: the folder given by the user.
        layout: 'decathlon', 'h5' (LA / Pancreas-CT), 'brats', 'promise12' or 'kvasir'.
        spatial_dims: 2 or 3.
        class_names: name per class index, background first.
        label_values: the value in the label files of each class index (BraTS: 0,1,2,4).
        modalities: one name per image channel.
        train / test: the cases of each split (test may be empty).
        trusted_ids: training cases whose labels are trusted (methods needing a clean set).
        regions: optional named unions of class indices for evaluation (BraTS WT/TC/ET).
        has_clean_labels: training cases carry a known clean label (benchmarks).
        val: an extra labelled split of held-out cases (ACDC's validation volumes).
        groups: case id -> group id (the patient) for layouts whose cases share a patient;
            empty when every case is its own group. Splits, noise and trusted cases
            group by it.
        train_dims: the training dimensionality the layout is meant for (ACDC: 2, slices
            stored as one-slice volumes); None follows `spatial_dims`.
        spacing_known: False when the files carry no voxel spacing (distances in pixels).
        ignore_value: the raw value of unannotated pixels (nnU-Net v2 ``"ignore"``), loaded
            as ``IGNORE_INDEX``; None when the dataset has none.
        file_ending: the declared file suffix (nnU-Net v2 ``file_ending``) predictions are written with.
    """

    root: Path
    layout: str
    spatial_dims: int
    class_names: list[str]
    label_values: list[int]
    modalities: list[str]
    train: list[CaseRef]
    test: list[CaseRef] = field(default_factory=list)
    trusted_ids: list[str] = field(default_factory=list)
    regions: dict[str, list[int]] = field(default_factory=dict)
    has_clean_labels: bool = False
    val: list[CaseRef] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)
    train_dims: int | None = None
    spacing_known: bool = True
    ignore_value: int | None = None
    file_ending: str | None = None

    def group_of(self, case_id: str) -> str:
        """The group (patient) of a case; the case itself when the layout has no groups."""
        return self.groups.get(case_id, case_id)

    def split(self, name: str) -> list[CaseRef]:
        """The cases of a split: 'train', 'val', 'test' or 'all' (train + val + test).

        Raises:
            DataError: an unknown split name.
        """
        splits = {"train": self.train, "val": self.val, "test": self.test,
                  "all": self.train + self.val + self.test}
        if name not in splits:
            raise DataError(f"split must be one of {', '.join(splits)}, got '{name}'{did_you_mean(name, splits)}")
        return splits[name]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return len(self.modalities)

    def case(self, case_id: str) -> CaseRef:
        for ref in self.train + self.val + self.test:
            if ref.id == case_id:
                return ref
        raise DataError(f"{self.root}: no case '{case_id}'")


def read_case_list(path: Path | str) -> list[str]:
    """Case ids from a text file, one per line; blank lines and '#' comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: case list not found")
    ids = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    return ids


def check_finite(image: np.ndarray, path: Path) -> None:
    """DataError if the image holds NaN or Inf."""
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise DataError(f"{path}: image holds {bad} NaN or Inf values")


def map_labels(label: np.ndarray, label_values: Sequence[int], path: Path,
               ignore_value: int | None = None) -> np.ndarray:
    """Map raw label values to class indices 0..K-1; DataError for values outside the classes.

    Args:
        label: integer-valued label array (*spatial) as stored in the file.
        label_values: the raw value of each class index.
        path: the label file, for the message.
        ignore_value: raw value of unannotated pixels, mapped to ``IGNORE_INDEX``.
    Returns:
        int64 array (*spatial) of class indices (``IGNORE_INDEX`` at ignored pixels).
    """
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)):
            raise DataError(f"{path}: label holds NaN or Inf values")
        if not np.all(label == np.round(label)):
            raise DataError(f"{path}: label holds non-integer values")
    lab = np.asarray(label).astype(np.int64)
    if ignore_value is not None:
        ignored = lab == ignore_value
        if ignored.any():
            out = map_labels(np.where(ignored, label_values[0], lab), label_values, path)
            out[ignored] = IGNORE_INDEX
            return out
    values = np.asarray(label_values, dtype=np.int64)
    present = np.unique(lab)
    unknown = np.setdiff1d(present, values)
    if unknown.size:
        raise DataError(
            f"{path}: label values {unknown.tolist()} are outside the declared classes {values.tolist()}"
        )
    if np.array_equal(values, np.arange(len(values))):
        return lab
    lut = np.zeros(int(values.max()) + 1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    return lut[lab]


def to_raw_labels(label: np.ndarray, label_values: Sequence[int], ignore_value: int | None = None) -> np.ndarray:
    """Class indices (*S) back to the raw values of the label files (BraTS: 0,1,2,4);
    ``IGNORE_INDEX`` back to `ignore_value` (to 0's value when there is none)."""
    label = np.asarray(label)
    out = np.asarray(label_values, dtype=np.int64)[np.maximum(label, 0)]
    if ignore_value is not None:
        out[label < 0] = ignore_value
    return out


def check_same_shape(image_shape: tuple[int, ...], label_shape: tuple[int, ...],
                     image_path: Path, label_path: Path) -> None:
    """DataError if the image and label spatial shapes differ."""
    if tuple(image_shape) != tuple(label_shape):
        raise DataError(
            f"{label_path}: label shape {tuple(label_shape)} differs from image shape "
            f"{tuple(image_shape)} of {image_path.name}"
        )


def normalize_intensity(image: np.ndarray, modality: str) -> np.ndarray:
    """Normalise one channel: CT clipped to its 0.5-99.5 percentiles then z-scored; a
    modality named ``*-minmax`` (ACDC: ``MRI-minmax``) scaled to [0, 1] by its min and max;
    other modalities (MRI, RGB) z-scored over the non-zero voxels (the whole image if
    there are few). Returns float32 of the same shape."""
    img = np.asarray(image, dtype=np.float32)
    if modality.lower().endswith("minmax"):
        lo, hi = float(img.min()), float(img.max())
        return ((img - lo) / max(hi - lo, 1e-8)).astype(np.float32)
    if modality.upper() == "CT":
        lo, hi = np.percentile(img, [0.5, 99.5])
        img = np.clip(img, lo, hi)
        mask = np.ones(img.shape, dtype=bool)
    else:
        mask = img != 0
        if mask.sum() < 0.1 * img.size:
            mask = np.ones(img.shape, dtype=bool)
    mean, std = float(img[mask].mean()), float(img[mask].std())
    return ((img - mean) / max(std, 1e-6)).astype(np.float32)


def cases_under(name: str, case_ids: Sequence[str], groups: dict[str, str]) -> list[str]:
    """The case ids a name stands for: the case itself, or with `groups`, every case of a
    group (``patient012``) or under an id prefix (a frame ``patient012_frame01`` holds its
    slices ``patient012_frame01_slice_K``). Empty when nothing matches."""
    if name in groups.values():
        return [c for c in case_ids if groups.get(c) == name]
    if groups:
        return [c for c in case_ids if c == name or c.startswith(name + "_")]
    return [name] if name in set(case_ids) else []


def resolve_trusted_ids(ids: Sequence[str], train_ids: Sequence[str], source: Path | str,
                        groups: dict[str, str] | None = None) -> list[str]:
    """Check a list of trusted (clean) case names against the training cases.

    Args:
        ids: the names as given (a case list file or a dataset.json key).
        train_ids: ids of the training cases.
        source: where the ids came from, for the message.
        groups: case id -> group id; a name may then be a group (patient) or an id prefix
            and stands for all the cases under it (see `cases_under`).
    Returns:
        the case ids in the order given, duplicates removed.
    Raises:
        DataError: a name that is no training case (with a "did you mean" hint).
    """
    known = list(train_ids)
    out: dict[str, None] = {}
    for name in ids:
        name = str(name).strip()
        matched = cases_under(name, known, groups or {})
        if not matched:
            names = set(known) | set((groups or {}).values())
            raise DataError(
                f"{source}: trusted case '{name}' is not a training case{did_you_mean(name, names)}"
            )
        out.update(dict.fromkeys(matched))
    return list(out)


def check_compatible(what: str, class_names: Sequence, n_channels: int, data_dims: int | None, ds: Dataset,
                     *, match_names: bool = False) -> None:
    """DataError (one line) when a model or dataset described by `what` does not fit `ds`:
    another number of classes (with `match_names`, other class names) or image channels, or
    (when `data_dims` is given) of dimensions."""
    if match_names and list(class_names) != list(ds.class_names):
        raise DataError(f"{what}: classes {list(class_names)} differ from the classes {list(ds.class_names)} "
                        f"of {ds.root}")
    if len(class_names) != ds.num_classes:
        raise DataError(f"{what}: {len(class_names)} classes ({', '.join(map(str, class_names))}) but target "
                        f"dataset {ds.root} has {ds.num_classes} ({', '.join(map(str, ds.class_names))})")
    if n_channels != ds.in_channels:
        raise DataError(f"{what}: {n_channels} image channel(s) but target dataset {ds.root} has {ds.in_channels}")
    if data_dims is not None and data_dims != ds.spatial_dims:
        raise DataError(f"{what}: {data_dims}D images but target dataset {ds.root} is {ds.spatial_dims}D")
