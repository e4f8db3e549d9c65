"""MetaImage (``.mhd`` header + data file, or single-file ``.mha``; PROMISE12's format).

A small reader and writer instead of ITK: header keys, raw or zlib-compressed data of one
channel, either byte order. Arrays are returned in (x, y, z) order like the NIfTI path.
MetaImage world coordinates are LPS (ITK/DICOM); the affine returned is converted to RAS
like nibabel's (and NIfTI's), see :func:`metaimage_affine`.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import Volume, atomic_path

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
