"""Kvasir-SEG polyp images.

    <root>/images/<name>.jpg        RGB colonoscopy frames
    <root>/masks/<name>.jpg         masks 0/255 with JPEG artefacts (thresholded at 127)
    <root>/masks_clean/<name>.jpg   optional: known clean masks (benchmarks)

Images become 3 channels (R, G, B), each z-scored; masks become 2 classes
(0 background, 1 polyp). Kvasir-SEG has no official split: every case is a training case.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import case_id, list_case_files, read_file
from .case import Case, CaseRef, Dataset, Layout, check_finite, check_same_shape, normalize_intensity, \
    read_case_list, resolve_trusted_ids

MASK_THRESHOLD = 127


def is_kvasir_layout(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "masks").is_dir()


def _read_mask(path: Path, image_shape: tuple[int, ...], image_path: Path) -> np.ndarray:
    arr = read_file(path).array
    if arr.ndim == 3:
        arr = arr[..., : min(arr.shape[-1], 3)].mean(axis=-1)  # colour-saved masks
    if arr.ndim != 2:
        raise DataError(f"{path}: mask has shape {arr.shape}; expected (H, W)")
    check_same_shape(image_shape, arr.shape, image_path, path)
    return (arr > MASK_THRESHOLD).astype(np.int64)


def _load_kvasir_case(cid: str, image_path: Path, mask_path: Path, clean_path: Path | None) -> Case:
    arr = read_file(image_path).array
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)  # a grayscale frame
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise DataError(f"{image_path}: image has shape {arr.shape}; expected an RGB picture (H, W, 3)")
    arr = arr[..., :3]
    if arr.dtype.kind == "f":
        check_finite(arr, image_path)
    image = np.stack([normalize_intensity(arr[..., c], "RGB") for c in range(3)])
    label = _read_mask(mask_path, image.shape[1:], image_path)
    clean = _read_mask(clean_path, image.shape[1:], image_path) if clean_path is not None else None
    return Case(id=cid, image=image, label=label, spacing=(1.0, 1.0), affine=np.eye(4),
                image_path=image_path, clean_label=clean)


def read_kvasir(root: Path | str, *, clean_cases_file: Path | str | None = None) -> Dataset:
    """Open a Kvasir-SEG folder (images/ and masks/ with the same file names).

    Args:
        root: the folder holding images/ and masks/.
        clean_cases_file: optional text file, one trusted case id per line.
    Returns:
        a 2D Dataset with 3 channels and 2 classes; every case in train.
    Raises:
        DataError: missing folders, no images, unknown trusted ids. A missing mask raises
            when its case is loaded.
    """
    root = Path(root)
    images_dir, masks_dir, clean_dir = root / "images", root / "masks", root / "masks_clean"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: folder not found (Kvasir-SEG layout: images/ and masks/)")
    if not masks_dir.is_dir():
        raise DataError(f"{masks_dir}: folder not found (Kvasir-SEG layout: images/ and masks/)")
    images = list_case_files(images_dir)
    if not images:
        raise DataError(f"{images_dir}: no image files")
    masks = {case_id(p): p for p in list_case_files(masks_dir)}
    has_clean = clean_dir.is_dir()
    cleans = {case_id(p): p for p in list_case_files(clean_dir)} if has_clean else {}
    train = []
    for img in images:
        cid = case_id(img)
        mask = masks.get(cid, masks_dir / img.name)
        clean = cleans.get(cid, clean_dir / img.name) if has_clean else None
        train.append(CaseRef(id=cid, path=img, loader=partial(_load_kvasir_case, cid, img, mask, clean)))
    trusted: list[str] = []
    if clean_cases_file is not None:
        trusted = resolve_trusted_ids(read_case_list(clean_cases_file), [r.id for r in train], clean_cases_file)
    return Dataset(root=root, layout="kvasir", spatial_dims=2, class_names=["background", "polyp"],
                   label_values=[0, 1], modalities=["R", "G", "B"], train=train, test=[],
                   trusted_ids=trusted, has_clean_labels=has_clean)


LAYOUT = Layout("kvasir", is_kvasir_layout, read_kvasir, "images/+masks/ (Kvasir)")
