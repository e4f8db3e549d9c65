"""Reading and writing image and label files (NIfTI, MetaImage, PNG/JPEG, h5) with one-line errors.

Every reader returns arrays in (x, y[, z]) order for NIfTI, MetaImage and h5 and (row, col)
for 2D images, plus the voxel spacing in millimetres and a 4x4 affine (identity-scaled for
formats that have none), so that outputs can keep the input's geometry.

MetaImage (``.mhd`` header + data file, or single-file ``.mha``; PROMISE12's format) is
read by a small reader here rather than ITK: header keys, raw or zlib-compressed data of
one channel, either byte order. Its world coordinates are LPS (ITK/DICOM); the affine
returned is converted to RAS like nibabel's (and NIfTI's), see :func:`metaimage_affine`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
METAIMAGE_SUFFIXES = (".mhd", ".mha")
SUPPORTED_SUFFIXES = NIFTI_SUFFIXES + IMAGE2D_SUFFIXES + METAIMAGE_SUFFIXES + (".h5", ".hdf5")


@dataclass
class Volume:
    """An array read from a file with its geometry.

    Attributes:
        array: the data; (X, Y[, Z]) for NIfTI/MetaImage/h5, (H, W) or (H, W, 3) for 2D
            images, and (X, Y, Z, C) for multi-channel NIfTI.
        spacing: voxel size in mm per spatial axis.
        affine: 4x4 voxel-to-world matrix: NIfTI's own, MetaImage's converted to RAS,
            or diag(spacing) otherwise.
        path: the file it came from.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    path: Path


def case_id(path: Path | str) -> str:
    """The case id of a file: its name without any supported extension."""
    name = Path(path).name
    for suf in SUPPORTED_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(name).stem


def file_kind(path: Path | str) -> str:
    """'nifti', 'metaimage', 'image2d' or 'h5' from the file name; DataError for anything else."""
    name = str(path).lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(METAIMAGE_SUFFIXES):
        return "metaimage"
    if name.endswith(IMAGE2D_SUFFIXES):
        return "image2d"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    raise DataError(f"{path}: unsupported file type (expected NIfTI, MetaImage .mhd/.mha, PNG/JPEG or h5)")


def list_case_files(folder: Path) -> list[Path]:
    """Supported image files of a folder, sorted by name, hidden files skipped.

    MetaImage data files (``.raw``, ``.zraw``) are not listed: their ``.mhd`` header is.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(SUPPORTED_SUFFIXES)
    )

# ----------------------------------------------------------------------------- MetaImage

_MET_TYPES: dict[str, str] = {  # ElementType -> numpy dtype (MetaIO sizes: MET_LONG is 4 bytes)
    "MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2",
    "MET_UINT": "u4", "MET_INT": "i4", "MET_ULONG": "u4", "MET_LONG": "i4",
    "MET_ULONG_LONG": "u8", "MET_LONG_LONG": "i8", "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
_MET_WRITE_TYPES = {"u1": "MET_UCHAR", "i1": "MET_CHAR", "u2": "MET_USHORT", "i2": "MET_SHORT",
                    "u4": "MET_UINT", "i4": "MET_INT", "u8": "MET_ULONG_LONG", "i8": "MET_LONG_LONG",
                    "f4": "MET_FLOAT", "f8": "MET_DOUBLE"}
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
_MAX_HEADER_BYTES = 1 << 20


def metaimage_affine(spacing: tuple[float, ...], direction: np.ndarray, offset: tuple[float, ...]) -> np.ndarray:
    """The 4x4 voxel-to-world affine of a MetaImage, in RAS (NIfTI / nibabel) coordinates.

    MetaImage (like ITK and DICOM) puts voxel index ``i`` at LPS world point
    ``offset + direction @ diag(spacing) @ i``; NIfTI's world is RAS, so the first two
    world axes change sign (what nibabel and ITK's NIfTI writer do), letting labels written
    as NIfTI with this affine line up with the image in viewers.

    Args:
        spacing: voxel size per axis (N values).
        direction: (N, N) matrix whose column j is the world direction of axis j.
        offset: world (LPS) position of voxel 0 (N values).
    Returns:
        (4, 4) float64 affine; axes beyond the third are dropped, 2D images keep z = identity.
    """
    k = min(len(spacing), 3)
    lps = np.eye(4)
    lps[:k, :k] = np.asarray(direction, dtype=np.float64)[:k, :k] * np.asarray(spacing[:k], dtype=np.float64)
    lps[:k, 3] = np.asarray(offset[:k], dtype=np.float64)
    return _LPS_TO_RAS @ lps


def _metaimage_header(data: bytes, path: Path) -> tuple[dict[str, str], int]:
    """Parse 'Key = Value' lines up to ElementDataFile (always the last key).

    Returns ({lower-case key: value}, offset of the first byte after the ElementDataFile line).
    """
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data) and pos < _MAX_HEADER_BYTES:
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        line = data[pos:end].decode("latin-1").strip()
        pos = end + 1
        if not line:
            continue
        if any(ord(c) < 32 and c != "\t" for c in line):
            raise DataError(f"{path}: bad MetaImage header (binary bytes before the ElementDataFile line)")
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise DataError(f"{path}: bad MetaImage header line {line[:60]!r} (expected 'Key = Value')")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            return fields, min(pos, len(data))
    raise DataError(f"{path}: bad MetaImage header (no ElementDataFile line)")


def _met_numbers(fields: dict[str, str], keys: tuple[str, ...], n: int, path: Path, kind: type = float
                 ) -> list | None:
    """The n numbers of the first key present (None if none is); DataError if malformed."""
    for key in keys:
        if key.lower() in fields:
            text = fields[key.lower()]
            try:
                vals = [kind(v) for v in text.split()]
            except ValueError:
                raise DataError(f"{path}: bad MetaImage header: {key} = {text!r} is not {n} number(s)") from None
            if len(vals) != n or not all(np.isfinite(vals)):
                raise DataError(f"{path}: bad MetaImage header: {key} = {text!r}, expected {n} finite number(s)")
            return vals
    return None


def _met_bool(fields: dict[str, str], keys: tuple[str, ...], path: Path) -> bool:
    for key in keys:
        if key.lower() in fields:
            text = fields[key.lower()].lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise DataError(f"{path}: bad MetaImage header: {key} = {fields[key.lower()]!r} (expected True or False)")
    return False


def read_metaimage(path: Path | str) -> Volume:
    """Read a MetaImage file (``.mhd`` header + data file, or ``.mha``) without ITK.

    Supports ElementDataFile as a file name relative to the header's folder (HeaderSize
    honoured, -1 = data at the end) or ``LOCAL`` (data right after the header), one
    channel of any scalar ElementType, either byte order (BinaryDataByteOrderMSB /
    ElementByteOrderMSB) and zlib/gzip compression (CompressedData, CompressedDataSize).

    Returns:
        Volume with array (X, Y[, Z[, T]]) in the file's own dtype (native byte order,
        writable; MetaImage stores x fastest), spacing per axis (at most 3; ElementSpacing,
        else ElementSize, else 1) and the RAS affine of :func:`metaimage_affine` built from
        ElementSpacing, TransformMatrix and Offset.
    Raises:
        DataError: one line naming the file: bad header, missing or truncated data file,
            unknown ElementType, several channels, ASCII data, corrupt compressed data.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    fields, header_end = _metaimage_header(data, path)
    ndims_text = fields.get("ndims", "")
    if not ndims_text.isdigit() or not 2 <= int(ndims_text) <= 4:
        raise DataError(f"{path}: bad MetaImage header: NDims = {ndims_text!r} (expected 2, 3 or 4)")
    n = int(ndims_text)
    dims = _met_numbers(fields, ("DimSize",), n, path, int)
    if dims is None or min(dims) < 1:
        raise DataError(f"{path}: bad MetaImage header: DimSize = {fields.get('dimsize')!r}, "
                        f"expected {n} positive integers")
    channels = fields.get("elementnumberofchannels", "1")
    if channels != "1":
        raise DataError(f"{path}: MetaImage with ElementNumberOfChannels = {channels} is not supported "
                        "(only one channel per file)")
    etype = fields.get("elementtype", "").upper()
    if etype not in _MET_TYPES:
        raise DataError(f"{path}: unknown MetaImage ElementType {fields.get('elementtype', '')!r} "
                        f"(expected one of {', '.join(_MET_TYPES)})")
    if "binarydata" in fields and not _met_bool(fields, ("BinaryData",), path):
        raise DataError(f"{path}: ASCII MetaImage data (BinaryData = False) is not supported")
    msb = _met_bool(fields, ("BinaryDataByteOrderMSB", "ElementByteOrderMSB"), path)
    compressed = _met_bool(fields, ("CompressedData",), path)
    spacing = _met_numbers(fields, ("ElementSpacing", "ElementSize"), n, path) or [1.0] * n
    if min(spacing) <= 0:
        raise DataError(f"{path}: bad MetaImage header: spacing {spacing} must be positive")
    offset = _met_numbers(fields, ("Offset", "Position", "Origin"), n, path) or [0.0] * n
    matrix = _met_numbers(fields, ("TransformMatrix", "Rotation", "Orientation"), n * n, path)
    # TransformMatrix lists axis 0's direction, then axis 1's ... (ITK's MetaImageIO)
    direction = np.eye(n) if matrix is None else np.asarray(matrix, dtype=np.float64).reshape(n, n).T

    dtype = np.dtype(_MET_TYPES[etype]).newbyteorder(">" if msb else "<")
    count = int(np.prod(dims))
    nbytes = count * dtype.itemsize
    data_name = fields["elementdatafile"]
    if data_name.upper() == "LOCAL":
        data_path, payload = path, data[header_end:]
    else:
        if data_name.upper().startswith("LIST") or ("%" in data_name and len(data_name.split()) > 1):
            raise DataError(f"{path}: MetaImage data split over several files (ElementDataFile = "
                            f"{data_name[:40]}) is not supported")
        data_path = Path(data_name) if Path(data_name).is_absolute() else path.parent / data_name
        if not data_path.is_file():
            raise DataError(f"{data_path}: MetaImage data file not found (ElementDataFile of {path.name})")
        try:
            payload = data_path.read_bytes()
        except OSError as exc:
            raise DataError(f"{data_path}: cannot read file ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
        skip = _met_numbers(fields, ("HeaderSize",), 1, path, int)
        if skip is not None and skip[0] == -1 and not compressed:
            payload = payload[max(len(payload) - nbytes, 0):]
        elif skip is not None and skip[0] > 0:
            payload = payload[skip[0]:]
    where = "" if data_path == path else f" (data of {path.name})"
    if compressed:
        csize = _met_numbers(fields, ("CompressedDataSize",), 1, path, int)
        if csize is not None:
            if len(payload) < csize[0]:
                raise DataError(f"{data_path}: truncated MetaImage data: {len(payload)} compressed bytes, "
                                f"CompressedDataSize = {csize[0]}{where}")
            payload = payload[: csize[0]]
        try:
            inflater = zlib.decompressobj(wbits=47)  # zlib or gzip stream, detected
            raw = inflater.decompress(payload, nbytes + 1)
        except zlib.error as exc:
            raise DataError(f"{data_path}: corrupt compressed MetaImage data ({exc}){where}") from exc
    else:
        raw = payload
    if len(raw) != nbytes:
        what = "truncated MetaImage data" if len(raw) < nbytes else "MetaImage data larger than its header says"
        raise DataError(
            f"{data_path}: {what}: {len(raw)} bytes{' after decompression' if compressed else ''}, expected "
            f"{nbytes} for DimSize {' '.join(map(str, dims))} of {etype}{where}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(dims[::-1]).T  # x fastest -> (X, Y, Z)
    arr = arr.astype(dtype.newbyteorder("="))  # native order, writable copy
    k = min(n, 3)
    return Volume(arr, tuple(float(s) for s in spacing[:k]), metaimage_affine(spacing, direction, offset), path)


def _fmt(values) -> str:
    return " ".join(repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v)) for v in values)


def write_metaimage(path: Path | str, array: np.ndarray, *, affine: np.ndarray | None = None,
                    spacing: tuple[float, ...] | None = None) -> Path:
    """Write `array` (X, Y[, Z]) as MetaImage, atomically: ``.mha`` one file (LOCAL data),
    ``.mhd`` a header plus ``<name>.raw`` beside it; little endian, uncompressed.

    `affine` is RAS (as :func:`read_metaimage` returns it) and is converted back to LPS
    spacing, TransformMatrix and Offset; `spacing`, if given, overrides the spacing.
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    code = arr.dtype.str[1:]
    if code not in _MET_WRITE_TYPES or not 2 <= arr.ndim <= 3:
        raise DataError(f"{path}: cannot write a {arr.dtype} array of shape {arr.shape} as MetaImage")
    n = arr.ndim
    direction, offset = np.eye(n), np.zeros(n)
    sp = np.ones(n)
    if affine is not None:
        lps = _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
        m = lps[:n, :n]
        sp = np.linalg.norm(m, axis=0)
        if np.all(sp > 0):
            direction = m / sp
        offset = lps[:n, 3]
    if spacing is not None:
        sp = np.asarray(tuple(spacing)[:n], dtype=np.float64)
    local = path.name.lower().endswith(".mha")
    data_name = "LOCAL" if local else path.name[: -len(".mhd")] + ".raw"
    header = "\n".join([
        "ObjectType = Image", f"NDims = {n}", "BinaryData = True", "BinaryDataByteOrderMSB = False",
        "CompressedData = False", f"TransformMatrix = {_fmt(direction.T.ravel())}", f"Offset = {_fmt(offset)}",
        f"ElementSpacing = {_fmt(sp)}", f"DimSize = {_fmt(arr.shape)}",
        f"ElementType = {_MET_WRITE_TYPES[code]}", f"ElementDataFile = {data_name}",
    ]).encode("ascii") + b"\n"
    body = np.ascontiguousarray(arr.T).astype(arr.dtype.newbyteorder("<")).tobytes()
    if local:
        with atomic_path(path) as tmp:
            tmp.write_bytes(header + body)
    else:
        with atomic_path(path.parent / data_name) as tmp:
            tmp.write_bytes(body)
        with atomic_path(path) as tmp:
            tmp.write_bytes(header)
    return path


def read_file(path: Path | str, *, h5_key: str | None = None) -> Volume:
    """Read a NIfTI, MetaImage, 2D image or h5 dataset; DataError naming the file on any failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    kind = file_kind(path)
    try:
        if kind == "nifti":
            import nibabel as nib

            img = nib.load(str(path))
            arr = np.asarray(img.dataobj)
            zooms = tuple(float(z) for z in img.header.get_zooms()[: min(arr.ndim, 3)])
            vol = Volume(arr, zooms, np.asarray(img.affine, dtype=np.float64), path)
        elif kind == "metaimage":
            vol = read_metaimage(path)
        elif kind == "image2d":
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im)
            vol = Volume(arr, (1.0, 1.0), np.eye(4), path)
        else:
            import h5py

            with h5py.File(path, "r") as h5:
                if h5_key is None or h5_key not in h5:
                    raise DataError(f"{path}: h5 file has no dataset '{h5_key}' (has {sorted(h5.keys())})")
                arr = np.asarray(h5[h5_key])
            vol = Volume(arr, (1.0,) * arr.ndim, np.eye(4), path)
    except DataError:
        raise
    except Exception as exc:  # corrupt files raise many different types
        raise DataError(f"{path}: cannot read file ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if vol.array.size == 0:
        raise DataError(f"{path}: file holds an empty array")
    return vol


@contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(out_dir: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder; move it onto `out_dir` only on success.

    Refuses (DataError) a non-empty `out_dir` unless `overwrite`; on any failure the
    temporary folder is removed and `out_dir` is left as it was.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise DataError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise DataError(f"{out_dir}: folder exists and is not empty ")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    try:
        yield tmp
        for path in tmp.rglob("*"):  # per-file atomic writes leave mkstemp's private mode
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if out_dir.exists():
            old = tmp.with_name(tmp.name[: -len(".partial")] + ".old")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_label(path: Path | str, label: np.ndarray, *, affine: np.ndarray | None = None,
                spacing: tuple[float, ...] | None = None) -> Path:
    """Write a label map as NIfTI or MetaImage (keeping `affine`) or PNG (uint8) by the file name, atomically."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "metaimage":
        return write_metaimage(path, np.asarray(label, dtype=np.uint8), affine=affine, spacing=spacing)
    with atomic_path(path) as tmp:
        if kind == "nifti":
            import nibabel as nib

            if affine is None:
                affine = np.diag(list(spacing or (1.0,) * 3)[:3] + [1.0])
            img = nib.Nifti1Image(np.asarray(label, dtype=np.uint8), affine)
            if spacing is not None:
                img.header.set_zooms(tuple(spacing)[: label.ndim])
            nib.save(img, str(tmp))
        elif kind == "image2d":
            from PIL import Image

            Image.fromarray(np.asarray(label, dtype=np.uint8)).save(tmp, format="PNG")
        else:
            import h5py

            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("label", data=np.asarray(label, dtype=np.uint8), compression="gzip")
    return path


def write_image(path: Path | str, image: np.ndarray, *, affine: np.ndarray | None = None) -> Path:
    """Write an intensity image as NIfTI or MetaImage (float32, keeping `affine`) or 8-bit PNG, atomically."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "metaimage":
        return write_metaimage(path, np.asarray(image, dtype=np.float32), affine=affine)
    with atomic_path(path) as tmp:
        if kind == "nifti":
            import nibabel as nib

            nib.save(nib.Nifti1Image(np.asarray(image, dtype=np.float32),
                                     np.eye(4) if affine is None else affine), str(tmp))
        elif kind == "image2d":
            from PIL import Image

            arr = np.asarray(image)
            if arr.dtype != np.uint8:
                lo, hi = float(np.min(arr)), float(np.max(arr))
                arr = ((arr - lo) / max(hi - lo, 1e-8) * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(tmp, format="PNG")
        else:
            raise DataError(f"{path}: writing images as h5 is not supported")
    return path
