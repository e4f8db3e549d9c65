"""Medical Segmentation Decathlon (MSD) and nnU-Net raw layout.

    <root>/dataset.json        optional (MSD v1 or nnU-Net v2 style)
    <root>/imagesTr/           training images
    <root>/labelsTr/           training labels, same case names
    <root>/labelsTr_clean/     optional: known clean labels (benchmarks), same names
    <root>/imagesTs/           optional test images
    <root>/labelsTs/           optional test labels

Images are NIfTI (3D, 2D, or 4D (X, Y, Z, C) multi-channel MSD files, or nnU-Net
per-channel files ``case_0000.nii.gz``, ``case_0001.nii.gz``) or 2D PNG (grayscale or
RGB -> channels). MONAI's ``load_decathlon_datalist`` only reads the v1 json lists;
it neither infers a dataset without dataset.json nor groups nnU-Net channel files nor
validates shapes and label values, hence this reader.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io import IMAGE2D_SUFFIXES, ITK_SUFFIXES, NIFTI_SUFFIXES, case_id, file_kind, list_case_files, read_file
from .case import (
    Case,
    CaseRef,
    Dataset,
    Layout,
    check_finite,
    check_same_shape,
    map_labels,
    normalize_intensity,
    read_case_list,
    resolve_trusted_ids,
)

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")
_NO_NORM = {"nonorm", "none"}


@dataclass
class _JsonMeta:
    """What a dataset.json declares (None where it declares nothing)."""

    path: Path
    nnunet_v2: bool
    modalities: list[str] | None = None
    class_names: list[str] | None = None
    label_values: list[int] | None = None
    regions: dict[str, list[int]] = field(default_factory=dict)
    training: list[tuple[str, str | None]] | None = None
    test: list[tuple[str, str | None]] | None = None
    clean_cases: list[str] | None = None
    file_ending: str | None = None
    case_groups: dict[str, str] = field(default_factory=dict)
    train_dims: int | None = None
    spacing_known: bool = True
    ignore_value: int | None = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in NIFTI_SUFFIXES + ITK_SUFFIXES + IMAGE2D_SUFFIXES:
        if name.endswith(suf):
            return path.name[-len(suf):]
    return path.suffix


def _ordered_by_index(mapping: dict[str, Any], what: str, path: Path) -> list[str]:
    """{'0': a, '1': b} -> [a, b]; DataError unless the keys are 0..n-1."""
    try:
        items = sorted(((int(k), str(v)) for k, v in mapping.items()), key=lambda kv: kv[0])
    except (TypeError, ValueError):
        raise DataError(f"{path}: '{what}' keys must be channel indices '0', '1', ...") from None
    if [k for k, _ in items] != list(range(len(items))):
        raise DataError(f"{path}: '{what}' keys must be 0..{len(items) - 1}, got {[k for k, _ in items]}")
    return [v for _, v in items]


def _parse_labels(labels: Any, path: Path
                  ) -> tuple[list[str], list[int], dict[str, list[int]], bool, int | None]:
    """Parse MSD v1 ({"0": "background"}) or nnU-Net v2 ({"background": 0}) labels.

    nnU-Net v2 region entries ({"whole tumor": [1, 2, 3]}) become `regions` in class indices;
    its ``"ignore"`` entry (unannotated pixels) is no class but the returned ignore value.
    Returns (class_names, label_values, regions, is_v2, ignore_value).
    """
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: 'labels' must be a non-empty mapping")
    if all(str(k).strip().lstrip("-").isdigit() for k in labels):  # v1: value -> name
        pairs = sorted((int(k), str(v)) for k, v in labels.items())
        values = [v for v, _ in pairs]
        names = [n for _, n in pairs]
        is_v2 = False
        raw_regions: dict[str, list[int]] = {}
        ignore = None
    else:  # v2: name -> value or list of values (region)
        single: dict[int, str] = {}
        raw_regions = {}
        if "ignore" in labels:
            ignore = labels["ignore"]
            if isinstance(ignore, bool) or not isinstance(ignore, int) or ignore <= 0:
                raise DataError(f"{path}: label 'ignore' must be a positive integer value, got {ignore!r}")
            labels = {k: v for k, v in labels.items() if k != "ignore"}
            if not labels:
                raise DataError(f"{path}: 'labels' declares only 'ignore'")
        else:
            ignore = None
        for name, val in labels.items():
            if isinstance(val, bool):
                raise DataError(f"{path}: label '{name}' has a non-integer value {val!r}")
            if isinstance(val, int):
                single[val] = str(name)
            elif isinstance(val, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in val):
                raw_regions[str(name)] = list(val)
            else:
                raise DataError(f"{path}: label '{name}' has a non-integer value {val!r}")
        all_values = set(single) | {v for vs in raw_regions.values() for v in vs} | {0}
        values = sorted(all_values)
        names = [single.get(v, "background" if v == 0 else f"label {v}") for v in values]
        is_v2 = True
    if values[0] != 0:
        raise DataError(f"{path}: 'labels' must declare background value 0, got {values}")
    if len(set(values)) != len(values):
        raise DataError(f"{path}: 'labels' declares a value twice: {values}")
    if ignore is not None and ignore in values:
        raise DataError(f"{path}: the 'ignore' value {ignore} is also a class or region value")
    index = {v: i for i, v in enumerate(values)}
    regions = {name: sorted(index[v] for v in vs) for name, vs in raw_regions.items()}
    return names, values, regions, is_v2, ignore


def _parse_entries(entries: Any, key: str, path: Path) -> list[tuple[str, str | None]]:
    """json 'training' / 'test' entries -> [(image, label or None)] (relative paths)."""
    if not isinstance(entries, list):
        raise DataError(f"{path}: '{key}' must be a list")
    out: list[tuple[str, str | None]] = []
    for e in entries:
        if isinstance(e, str):
            out.append((e, None))
        elif isinstance(e, dict) and isinstance(e.get("image"), str):
            lab = e.get("label")
            out.append((e["image"], lab if isinstance(lab, str) else None))
        else:
            raise DataError(f"{path}: '{key}' entry {e!r} has no 'image' path")
    return out


def _read_json(path: Path) -> _JsonMeta:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read dataset.json ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: dataset.json must hold a JSON object")
    v2 = "channel_names" in raw or "file_ending" in raw
    meta = _JsonMeta(path=path, nnunet_v2=v2)
    mods = raw.get("channel_names", raw.get("modality"))
    if mods is not None:
        if not isinstance(mods, dict) or not mods:
            raise DataError(f"{path}: 'modality' / 'channel_names' must be a non-empty mapping")
        meta.modalities = _ordered_by_index(mods, "channel_names" if "channel_names" in raw else "modality", path)
    if "labels" in raw:
        meta.class_names, meta.label_values, meta.regions, is_v2, meta.ignore_value = _parse_labels(
            raw["labels"], path)
        meta.nnunet_v2 = meta.nnunet_v2 or is_v2
    if raw.get("regions_class_indices"):  # written by noisyseg's own converted copies (BraTS WT/TC/ET)
        reg = raw["regions_class_indices"]
        k = len(meta.class_names) if meta.class_names else None
        if not isinstance(reg, dict) or not all(
                isinstance(v, list) and v and all(isinstance(i, int) and (k is None or 0 < i < k) for i in v)
                for v in reg.values()):
            raise DataError(f"{path}: 'regions_class_indices' must map names to lists of foreground class indices")
        meta.regions = {str(n): sorted(v) for n, v in reg.items()}
    if raw.get("training"):
        meta.training = _parse_entries(raw["training"], "training", path)
    if raw.get("test"):
        meta.test = _parse_entries(raw["test"], "test", path)
    if "clean_cases" in raw:
        cc = raw["clean_cases"]
        if not isinstance(cc, list) or not all(isinstance(c, str) for c in cc):
            raise DataError(f"{path}: 'clean_cases' must be a list of case ids")
        meta.clean_cases = cc
    if isinstance(raw.get("file_ending"), str):
        meta.file_ending = raw["file_ending"]
    _read_noisyseg_keys(raw, meta, path)
    return meta


def _read_noisyseg_keys(raw: dict, meta: _JsonMeta, path: Path) -> None:
    """The keys noisyseg's converted copies add: 'case_groups' (case id -> patient), 'train_dims'
    and 'spacing_known' (see Dataset)."""
    groups = raw.get("case_groups", {})
    if not isinstance(groups, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in groups.items()):
        raise DataError(f"{path}: 'case_groups' must map case ids to group ids")
    meta.case_groups = dict(groups)
    dims = raw.get("train_dims")
    if dims not in (None, 2, 3):
        raise DataError(f"{path}: 'train_dims' must be 2 or 3, got {dims!r}")
    meta.train_dims = dims
    meta.spacing_known = bool(raw.get("spacing_known", True))


def _index_folder(files: list[Path], split_channels: bool) -> dict[str, list[Path]]:
    """case id -> its image files (one file, or nnU-Net channel files in channel order)."""
    index: dict[str, list[tuple[int, Path]]] = {}
    for f in files:
        cid = case_id(f)
        m = _CHANNEL_RE.match(cid) if split_channels else None
        if m:
            index.setdefault(m.group("case"), []).append((int(m.group("ch")), f))
        else:
            index.setdefault(cid, []).append((0, f))
    return {cid: [p for _, p in sorted(chs)] for cid, chs in sorted(index.items())}


def group_channel_files(files: list[Path], n_channels: int) -> list[tuple[str, list[Path]]]:
    """A plain folder's image files as cases: nnU-Net channel files ``<case>_0000``,
    ``<case>_0001``, ... grouped under ``<case>`` when every file is one and each case has
    exactly channels 0..n_channels-1; otherwise one case per file, named by the file.

    Raises:
        DataError: multi-channel input whose channel files are incomplete, naming the case.
    """
    matches = [(_CHANNEL_RE.match(case_id(f)), f) for f in files]
    if not files or not all(m for m, _ in matches):
        return [(case_id(f), [f]) for f in files]
    groups: dict[str, dict[int, Path]] = {}
    for m, f in matches:
        groups.setdefault(m.group("case"), {})[int(m.group("ch"))] = f
    want = list(range(n_channels))
    bad = [(cid, chs) for cid, chs in groups.items() if sorted(chs) != want]
    if bad and n_channels == 1:
        return [(case_id(f), [f]) for f in files]  # numbered single-channel files, not channels
    if bad:
        cid, chs = bad[0]
        raise DataError(f"{next(iter(chs.values()))}: case '{cid}' has channel files {sorted(chs)}; the run "
                        f"expects {n_channels} (_0000 .. _{n_channels - 1:04d})")
    return [(cid, [chs[i] for i in want]) for cid, chs in sorted(groups.items())]


def _decide_split(meta: _JsonMeta | None, root: Path, image_files: list[Path], label_ids: set[str]) -> bool:
    """Are the images nnU-Net per-channel files (case_0000.nii.gz)?"""
    if not image_files:
        return False
    ids = [case_id(f) for f in image_files]
    if meta is not None and meta.nnunet_v2:
        return True
    if meta is not None and meta.training:
        # nnU-Net v1 keeps the MSD json ("./imagesTr/la_003.nii.gz") but splits the files.
        first = root / meta.training[0][0]
        if first.is_file():
            return False
        return all(_CHANNEL_RE.match(i) for i in ids)
    if not all(_CHANNEL_RE.match(i) for i in ids):
        return False
    return not any(i in label_ids for i in ids)


def _image2d_channels(arr: np.ndarray, path: Path) -> np.ndarray:
    """A 2D picture (H, W) or (H, W, 3|4|2) -> (C, H, W); alpha channels dropped."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):  # gray+alpha, RGBA
        arr = arr[..., : arr.shape[-1] - 1]
    if arr.ndim == 3 and arr.shape[-1] in (1, 3):
        return np.moveaxis(arr, -1, 0)
    raise DataError(f"{path}: 2D image has shape {arr.shape}; expected (H, W) or (H, W, 3)")


def _label_array(vol_array: np.ndarray, spatial_dims: int, path: Path) -> np.ndarray:
    """A label as stored -> (*spatial); colour PNG labels must be gray (equal channels)."""
    lab = np.asarray(vol_array)
    if lab.ndim == spatial_dims + 1 and lab.shape[-1] in (1, 2, 3, 4):
        ch = lab[..., :3] if lab.shape[-1] >= 3 else lab[..., :1]
        if not np.all(ch == ch[..., :1]):
            raise DataError(f"{path}: label is a colour image; expected one value per pixel (class index)")
        lab = ch[..., 0]
    if lab.ndim != spatial_dims:
        raise DataError(f"{path}: label has {lab.ndim} axes, expected {spatial_dims}")
    return lab


def _peek_shape(path: Path) -> tuple[int, ...]:
    """Shape of an image file without reading its voxels (NIfTI header, PIL size/mode)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if file_kind(path) == "nifti":
            import nibabel as nib

            return tuple(int(s) for s in nib.load(str(path)).shape)
        if file_kind(path) in ("metaimage", "itk"):  # nnU-Net's SimpleITK datasets (.mha, .nrrd)
            from ..io import read_file

            return tuple(read_file(path).array.shape)
        from PIL import Image

        with Image.open(path) as im:
            bands = len(im.getbands())
            w, h = im.size
        return (h, w) if bands == 1 or im.mode == "P" else (h, w, bands)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read file ({type(exc).__name__}: {exc})".splitlines()[0]) from exc


def read_channels(files: list[Path], modalities: list[str], spatial_dims: int
                  ) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Read a case's image file(s) into a normalised float32 (C, *spatial) array.

    Args:
        files: one file (single- or multi-channel) or one file per channel, in order.
        modalities: one name per expected channel (decides the normalisation).
        spatial_dims: 2 or 3.
    Returns:
        (image, spacing, affine) with spacing and affine from the first file.
    Raises:
        DataError: unreadable file, wrong number of axes or channels, channel shapes that
            differ, NaN/Inf intensities.
    """
    chans: list[np.ndarray] = []
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    for f in files:
        vol = read_file(f)
        arr = vol.array
        if file_kind(f) == "image2d":
            if spatial_dims != 2:
                raise DataError(f"{f}: 2D image in a {spatial_dims}D dataset")
            arr = _image2d_channels(arr, f)
        elif arr.ndim == spatial_dims:
            arr = arr[None]
        elif arr.ndim == spatial_dims + 1:
            arr = np.moveaxis(arr, -1, 0)  # MSD 4D files are (X, Y, Z, C)
        else:
            raise DataError(
                f"{f}: image has {arr.ndim} axes {arr.shape}; expected {spatial_dims}D, or "
                f"{spatial_dims}D + channels"
            )
        if chans and arr.shape[1:] != chans[0].shape:
            raise DataError(
                f"{f}: channel shape {arr.shape[1:]} differs from {files[0].name} shape {chans[0].shape}"
            )
        if arr.dtype.kind == "f":
            check_finite(arr, f)
        if spacing is None:
            spacing = tuple(float(s) for s in vol.spacing[:spatial_dims])
            affine = vol.affine
        chans.extend(arr)
    n = len(modalities)
    if len(chans) == 3 and n == 1 and all(np.array_equal(chans[0], c) for c in chans[1:]):
        chans = chans[:1]  # a grayscale picture saved as RGB
    if len(chans) != n:
        raise DataError(
            f"{files[0]}: image has {len(chans)} channel(s), expected {n} ({', '.join(modalities)})"
        )
    image = np.stack([
        np.asarray(c, dtype=np.float32) if m.lower() in _NO_NORM else normalize_intensity(c, m)
        for c, m in zip(chans, modalities)
    ])
    assert spacing is not None and affine is not None
    return image, spacing, affine


def read_label(path: Path, image_shape: tuple[int, ...], image_path: Path,
               label_values: list[int], spatial_dims: int, ignore_value: int | None = None) -> np.ndarray:
    """Read a label file, check it matches the image, map it to class indices (int64;
    ``IGNORE_INDEX`` where it holds `ignore_value`)."""
    vol = read_file(path)
    lab = _label_array(vol.array, spatial_dims, path)
    check_same_shape(image_shape, lab.shape, image_path, path)
    return map_labels(lab, label_values, path, ignore_value)


def _load_case(cid: str, image_files: list[Path], split_channels: bool, label_path: Path | None,
               clean_path: Path | None, modalities: list[str], label_values: list[int],
               spatial_dims: int, ignore_value: int | None = None) -> Case:
    files = list(image_files)
    if split_channels:
        d, ext = files[0].parent, _suffix(files[0])
        expected = [d / f"{cid}_{i:04d}{ext}" for i in range(len(modalities))]
        extra = [p for p in files if p not in expected]
        if extra:
            raise DataError(
                f"{extra[0]}: unexpected channel file; the dataset has {len(modalities)} channel(s) "
                f"({', '.join(modalities)})"
            )
        files = expected  # a missing one fails in read_file, naming it
    image, spacing, affine = read_channels(files, modalities, spatial_dims)
    label = clean = None
    if label_path is not None:
        label = read_label(label_path, image.shape[1:], files[0], label_values, spatial_dims, ignore_value)
    if clean_path is not None:
        clean = read_label(clean_path, image.shape[1:], files[0], label_values, spatial_dims, ignore_value)
    return Case(id=cid, image=image, label=label, spacing=spacing, affine=affine,
                image_path=files[0], clean_label=clean)


def _label_index(folder: Path) -> dict[str, Path]:
    return {case_id(p): p for p in list_case_files(folder)} if folder.is_dir() else {}


def read_decathlon(root: Path | str, *, clean_cases_file: Path | str | None = None) -> Dataset:
    """Open a Medical Segmentation Decathlon / nnU-Net raw dataset folder.

    Args:
        root: the folder holding imagesTr/ (and labelsTr/, dataset.json, imagesTs/ ...).
        clean_cases_file: optional text file, one trusted training case id per line;
            overrides a dataset.json "clean_cases" list.
    Returns:
        a Dataset whose cases load lazily; test = imagesTs cases (label from labelsTs
        when present, else None).
    Raises:
        DataError: missing folders, no cases, malformed dataset.json, unknown trusted ids,
            unreadable first image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    json_path = root / "dataset.json"
    meta = _read_json(json_path) if json_path.is_file() else None
    images_tr, labels_tr = root / "imagesTr", root / "labelsTr"
    images_ts, labels_ts = root / "imagesTs", root / "labelsTs"
    clean_dir = root / "labelsTr_clean"
    if not images_tr.is_dir() and not images_ts.is_dir():
        raise DataError(f"{root}: no imagesTr/ or imagesTs/ folder (Decathlon layout)")

    tr_files = list_case_files(images_tr) if images_tr.is_dir() else []
    ts_files = list_case_files(images_ts) if images_ts.is_dir() else []
    if meta is not None and meta.file_ending:  # nnU-Net v2: only files with the declared ending
        ending = meta.file_ending.lower()
        tr_files = [f for f in tr_files if f.name.lower().endswith(ending)]
        ts_files = [f for f in ts_files if f.name.lower().endswith(ending)]
    tr_labels = _label_index(labels_tr)
    ts_labels = _label_index(labels_ts)
    clean_labels = _label_index(clean_dir)
    split = _decide_split(meta, root, tr_files or ts_files, set(tr_labels) | set(ts_labels))
    tr_index = _index_folder(tr_files, split)
    ts_index = _index_folder(ts_files, split)

    # (id, image files, label path)
    train: list[tuple[str, list[Path], Path | None]] = []
    if meta is not None and meta.training:
        for img, lab in meta.training:
            cid = case_id(Path(img).name)
            files = tr_index.get(cid, [root / img])
            lab_path = root / lab if lab else None
            if lab_path is None or not lab_path.is_file():
                lab_path = tr_labels.get(cid, lab_path)
            train.append((cid, files, lab_path or labels_tr / f"{cid}{_suffix(files[0])}"))
    else:
        for cid, files in tr_index.items():
            train.append((cid, files, tr_labels.get(cid, labels_tr / f"{cid}{_suffix(files[0])}")))
    if train and not labels_tr.is_dir():
        raise DataError(f"{labels_tr}: folder not found (the training images in imagesTr/ need labels)")

    test: list[tuple[str, list[Path], Path | None]] = []
    if meta is not None and meta.test:
        for img, lab in meta.test:
            cid = case_id(Path(img).name)
            files = ts_index.get(cid, [root / img])
            lab_path = root / lab if lab and (root / lab).is_file() else ts_labels.get(cid)
            test.append((cid, files, lab_path))
    else:
        for cid, files in ts_index.items():
            test.append((cid, files, ts_labels.get(cid)))
    if not train and not test:
        raise DataError(f"{root}: no image files in imagesTr/ or imagesTs/")
    ids = [c for c, _, _ in train]
    dup = sorted({c for c in ids if ids.count(c) > 1})
    if dup:
        raise DataError(f"{meta.path if meta else images_tr}: case '{dup[0]}' is listed twice")

    first_files = (train or test)[0][1]
    first = first_files[0]
    have_modalities = meta is not None and meta.modalities is not None
    if file_kind(first) == "image2d":
        spatial_dims = 2
        shape = () if have_modalities else _peek_shape(first)
    else:
        shape = _peek_shape(first)  # NIfTI header only
        spatial_dims = 2 if len(shape) == 2 else 3

    if meta is not None and meta.modalities is not None:
        modalities = list(meta.modalities)
    else:
        if split:
            n_ch = len(first_files)
        elif file_kind(first) == "image2d":
            n_ch = 1 if len(shape) == 2 else (shape[2] - 1 if shape[2] in (2, 4) else shape[2])
        else:
            n_ch = shape[-1] if len(shape) == spatial_dims + 1 else 1
        modalities = ["R", "G", "B"] if (n_ch == 3 and file_kind(first) == "image2d") else ["MRI"] * n_ch

    regions: dict[str, list[int]] = {}
    ignore_value = meta.ignore_value if meta is not None else None
    if meta is not None and meta.label_values is not None:
        class_names, label_values = list(meta.class_names or []), list(meta.label_values)
        regions = dict(meta.regions)
    else:
        found = {0}
        for p in [lab for _, _, lab in train + test if lab is not None and lab.is_file()]:
            lab = _label_array(read_file(p).array, spatial_dims, p)
            if lab.dtype.kind == "f" and not np.all(np.isfinite(lab)):
                raise DataError(f"{p}: label holds NaN or Inf values")
            found.update(int(v) for v in np.unique(lab))
        label_values = sorted(found)
        if len(label_values) == 1:
            label_values = [0, 1]
        class_names = ["background"] + [f"class {v}" for v in label_values[1:]]

    has_clean = clean_dir.is_dir()
    train_refs = []
    for cid, files, lab_path in train:
        clean_path = None
        if has_clean:
            clean_path = clean_labels.get(cid, clean_dir / (lab_path.name if lab_path else f"{cid}.nii.gz"))
        loader = partial(_load_case, cid, files, split, lab_path, clean_path, modalities,
                         label_values, spatial_dims, ignore_value)
        train_refs.append(CaseRef(id=cid, loader=loader, path=files[0]))
    test_refs = [
        CaseRef(id=cid, path=files[0], loader=partial(_load_case, cid, files, split, lab_path, None,
                                                      modalities, label_values, spatial_dims, ignore_value))
        for cid, files, lab_path in test
    ]

    groups = meta.case_groups if meta is not None else {}
    trusted: list[str] = []
    if clean_cases_file is not None:
        trusted = resolve_trusted_ids(read_case_list(clean_cases_file), ids, clean_cases_file, groups)
    elif meta is not None and meta.clean_cases is not None:
        trusted = resolve_trusted_ids(meta.clean_cases, ids, f"{meta.path} 'clean_cases'", groups)

    return Dataset(root=root, layout="decathlon", spatial_dims=spatial_dims, class_names=class_names,
                   label_values=label_values, modalities=modalities, train=train_refs, test=test_refs,
                   trusted_ids=trusted, regions=regions, has_clean_labels=has_clean, groups=groups,
                   train_dims=meta.train_dims if meta is not None else None,
                   spacing_known=meta.spacing_known if meta is not None else True,
                   ignore_value=ignore_value, file_ending=meta.file_ending if meta is not None else None)


def is_decathlon_layout(root: Path) -> bool:
    """A folder with ``dataset.json`` or ``imagesTr/`` or ``imagesTs/`` (MSD, nnU-Net raw)."""
    return (root / "dataset.json").is_file() or (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir()


LAYOUT = Layout("decathlon", is_decathlon_layout, read_decathlon, "imagesTr/+labelsTr/ or dataset.json (Decathlon)")
