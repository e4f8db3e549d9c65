"""MetaImage (.mhd + .raw, .mha) reading in noisyseg.io: axis order, byte order, compression,
geometry (LPS header -> RAS affine), bad files, listing and writing."""

from __future__ import annotations

import format_files as w  # sibling helper module
import numpy as np
import pytest

from noisyseg.errors import DataError
from noisyseg.io import (
    case_id,
    file_kind,
    list_case_files,
    read_file,
    write_image,
    write_label,
)

SPACING = (0.625, 0.625, 3.6)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _volume(shape=(5, 4, 3), dtype=np.int16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(100, 30, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -3000), min(info.max, 3000), shape, endpoint=True).astype(dtype)


def _one_line_error(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_x_is_fastest_in_the_data_file(tmp_path):
    """Stored values 0..23 with DimSize 2 3 4: voxel (x, y, z) holds x + 2y + 6z."""
    hdr = tmp_path / "seq.mhd"
    hdr.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 3 4\nElementType = MET_UCHAR\n"
                   "ElementDataFile = seq.raw\n")
    (tmp_path / "seq.raw").write_bytes(bytes(range(24)))
    vol = read_file(hdr)
    assert vol.array.shape == (2, 3, 4) and vol.array.dtype == np.uint8
    x, y, z = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
    np.testing.assert_array_equal(vol.array, x + 2 * y + 6 * z)
    assert vol.spacing == (1.0, 1.0, 1.0)  # no ElementSpacing
    np.testing.assert_allclose(vol.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
                                   np.float32, np.float64])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_uncompressed_round_trip(tmp_path, dtype, byteorder):
    arr = _volume(dtype=dtype)
    path = w.metaimage(tmp_path / "Case00.mhd", arr, SPACING, byteorder=byteorder)
    assert (tmp_path / "Case00.raw").stat().st_size == arr.size * arr.itemsize
    vol = read_file(path)
    assert vol.array.shape == (5, 4, 3) and vol.array.dtype == np.dtype(dtype)
    assert vol.array.dtype.isnative and vol.array.flags.writeable
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.spacing == SPACING
    assert vol.path == path


def test_zlib_compressed(tmp_path):
    arr = _volume(dtype=np.float32)
    path = w.metaimage(tmp_path / "Case07.mhd", arr, SPACING, compress=True)
    assert (tmp_path / "Case07.zraw").is_file()
    np.testing.assert_array_equal(read_file(path).array, arr)


def test_compressed_big_endian_without_compressed_size(tmp_path):
    arr = _volume(dtype=np.uint16)
    path = w.metaimage(tmp_path / "a.mhd", arr, byteorder=">", compress=True)
    text = path.read_text().replace(f"CompressedDataSize = {(tmp_path / 'a.zraw').stat().st_size}\n", "")
    path.write_text(text)
    assert "CompressedDataSize" not in text
    np.testing.assert_array_equal(read_file(path).array, arr)


@pytest.mark.parametrize("compress", [False, True])
def test_local_mha(tmp_path, compress):
    arr = _volume(dtype=np.int16)
    path = w.metaimage(tmp_path / "Case03.mha", arr, SPACING, compress=compress)
    assert "ElementDataFile = LOCAL" in path.read_bytes()[:1000].decode("latin-1")
    vol = read_file(path)
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.spacing == SPACING


def test_local_data_in_mhd_and_crlf_header(tmp_path):
    arr = _volume(dtype=np.uint8)
    path = w.metaimage(tmp_path / "x.mhd", arr, data_file="LOCAL")
    raw = path.read_bytes()
    header, body = raw.split(b"ElementDataFile = LOCAL\n", 1)
    path.write_bytes(header.replace(b"\n", b"\r\n") + b"ElementDataFile = LOCAL\r\n" + body)
    np.testing.assert_array_equal(read_file(path).array, arr)


def test_affine_from_spacing_direction_offset(tmp_path):
    """LPS voxel-to-world offset + D @ diag(spacing), converted to RAS (x, y negated)."""
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    offset = (-120.5, 88.25, 17.0)
    path = w.metaimage(tmp_path / "r.mhd", _volume(), SPACING, offset=offset, direction=direction)
    vol = read_file(path)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(SPACING)
    lps[:3, 3] = offset
    np.testing.assert_allclose(vol.affine, LPS_TO_RAS @ lps, atol=1e-12)
    # voxel (1, 0, 0) lies one x-step along the first direction column, in RAS
    world = vol.affine @ np.array([1.0, 0, 0, 1])
    np.testing.assert_allclose(world[:3], [-(offset[0] + c * 0.625), -(offset[1] + s * 0.625), offset[2]])
    assert vol.spacing == SPACING


def test_identity_direction_affine(tmp_path):
    path = w.metaimage(tmp_path / "Case01.mhd", _volume(), SPACING, offset=(10.0, -20.0, 30.0))
    expected = np.array([[-0.625, 0, 0, -10.0], [0, -0.625, 0, 20.0], [0, 0, 3.6, 30.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(read_file(path).affine, expected)


def test_element_size_and_position_synonyms(tmp_path):
    path = tmp_path / "s.mhd"
    w.metaimage(path, _volume(), SPACING)
    text = path.read_text().replace("ElementSpacing", "ElementSize").replace("Offset", "Position")
    path.write_text(text)
    vol = read_file(path)
    assert vol.spacing == SPACING
    np.testing.assert_allclose(vol.affine[:3, 3], [-0.0, -0.0, 0.0])


def test_2d_image(tmp_path):
    arr = _volume((6, 4), np.uint8)
    vol = read_file(w.metaimage(tmp_path / "slice.mhd", arr, (0.5, 0.7)))
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.spacing == (0.5, 0.7)
    np.testing.assert_allclose(np.diag(vol.affine), [-0.5, -0.7, 1.0, 1.0])


def test_header_size_skips_a_data_file_header(tmp_path):
    arr = _volume(dtype=np.int16)
    path = w.metaimage(tmp_path / "h.mhd", arr, extra={"HeaderSize": 16})
    raw = tmp_path / "h.raw"
    raw.write_bytes(b"\xff" * 16 + raw.read_bytes())
    np.testing.assert_array_equal(read_file(path).array, arr)
    path.write_text(path.read_text().replace("HeaderSize = 16", "HeaderSize = -1"))
    np.testing.assert_array_equal(read_file(path).array, arr)


# ------------------------------------------------------------------------------ bad files

def test_truncated_raw(tmp_path):
    path = w.metaimage(tmp_path / "Case05.mhd", _volume(dtype=np.int16), SPACING)
    raw = tmp_path / "Case05.raw"
    raw.write_bytes(raw.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"Case05\.raw: truncated MetaImage data: 110 bytes, expected 120") as exc:
        read_file(path)
    assert "Case05.mhd" in _one_line_error(exc)


def test_raw_larger_than_header_says(tmp_path):
    path = w.metaimage(tmp_path / "b.mhd", _volume(dtype=np.uint8))
    (tmp_path / "b.raw").write_bytes(b"\x00" * 61)
    with pytest.raises(DataError, match=r"b\.raw: MetaImage data larger than its header says: 61 bytes") as exc:
        read_file(path)
    _one_line_error(exc)


def test_truncated_compressed(tmp_path):
    path = w.metaimage(tmp_path / "c.mhd", _volume(dtype=np.float32), compress=True)
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                            if not line.startswith("CompressedDataSize")))
    zraw = tmp_path / "c.zraw"
    zraw.write_bytes(zraw.read_bytes()[: len(zraw.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"c\.zraw: truncated MetaImage data: \d+ bytes after decompression"):
        read_file(path)


def test_corrupt_compressed(tmp_path):
    path = w.metaimage(tmp_path / "c.mha", _volume(dtype=np.float32), compress=True)
    raw = path.read_bytes()
    cut = raw.index(b"LOCAL\n") + 6
    path.write_bytes(raw[:cut] + b"not zlib at all" * 40)
    with pytest.raises(DataError, match=r"c\.mha: corrupt compressed MetaImage data") as exc:
        read_file(path)
    _one_line_error(exc)


def test_missing_data_file(tmp_path):
    path = w.metaimage(tmp_path / "Case09.mhd", _volume())
    (tmp_path / "Case09.raw").unlink()
    with pytest.raises(DataError, match=r"Case09\.raw: MetaImage data file not found \(ElementDataFile of "
                                        r"Case09\.mhd\)") as exc:
        read_file(path)
    _one_line_error(exc)


def test_unknown_element_type(tmp_path):
    path = w.metaimage(tmp_path / "Case02.mhd", _volume(dtype=np.uint8), element_type="MET_FLOAT16")
    with pytest.raises(DataError, match=r"Case02\.mhd: unknown MetaImage ElementType 'MET_FLOAT16'") as exc:
        read_file(path)
    _one_line_error(exc)


def test_several_channels(tmp_path):
    path = w.metaimage(tmp_path / "rgb.mhd", _volume(dtype=np.uint8), extra={"ElementNumberOfChannels": 3})
    with pytest.raises(DataError, match=r"rgb\.mhd: MetaImage with ElementNumberOfChannels = 3 is not supported"):
        read_file(path)


@pytest.mark.parametrize("text, match", [
    ("NDims = 3\nDimSize = 2 3\nElementType = MET_UCHAR\nElementDataFile = x.raw\n", "DimSize = '2 3'"),
    ("NDims = three\nDimSize = 2 3 4\nElementType = MET_UCHAR\nElementDataFile = x.raw\n", "NDims = 'three'"),
    ("NDims = 3\nDimSize = 2 3 4\nElementType = MET_UCHAR\n", "no ElementDataFile line"),
    ("NDims = 3\nthis is no header\nElementDataFile = x.raw\n", "bad MetaImage header line 'this is no header'"),
    ("NDims = 3\nDimSize = 2 3 4\nElementSpacing = 1 0 1\nElementType = MET_UCHAR\nElementDataFile = x.raw\n",
     "must be positive"),
    ("NDims = 3\nDimSize = 2 3 4\nTransformMatrix = 1 0 0\nElementType = MET_UCHAR\nElementDataFile = x.raw\n",
     "TransformMatrix = '1 0 0', expected 9"),
])
def test_bad_header(tmp_path, text, match):
    path = tmp_path / "x.mhd"
    path.write_text(text)
    (tmp_path / "x.raw").write_bytes(bytes(24))
    with pytest.raises(DataError, match=r"x\.mhd: bad MetaImage header") as exc:
        read_file(path)
    assert match in _one_line_error(exc)


def test_binary_garbage_as_header(tmp_path):
    path = w.garbage(tmp_path / "junk.mha")
    with pytest.raises(DataError, match=r"junk\.mha: bad MetaImage header") as exc:
        read_file(path)
    _one_line_error(exc)


# ------------------------------------------------------------------------ names and writing

def test_names_listing_and_kind(tmp_path):
    w.metaimage(tmp_path / "Case00.mhd", _volume())
    w.metaimage(tmp_path / "Case00_segmentation.mhd", _volume(dtype=np.uint8))
    w.metaimage(tmp_path / "Case01.mha", _volume())
    w.metaimage(tmp_path / "Case02.mhd", _volume(), compress=True)
    assert [p.name for p in list_case_files(tmp_path)] == [
        "Case00.mhd", "Case00_segmentation.mhd", "Case01.mha", "Case02.mhd"]  # no .raw / .zraw
    assert case_id(tmp_path / "Case00.mhd") == "Case00"
    assert case_id("Case00_segmentation.mhd") == "Case00_segmentation"
    assert case_id("Case01.mha") == "Case01"
    assert file_kind("Case00.MHD") == "metaimage"
    with pytest.raises(DataError, match="unsupported file type"):
        file_kind("Case00.raw")


@pytest.mark.parametrize("name", ["Case04.mhd", "Case04.mha"])
def test_write_label_round_trip(tmp_path, name):
    src = w.metaimage(tmp_path / "in" / "Case04.mhd", _volume(dtype=np.int16), SPACING, offset=(3.0, -4.0, 5.0),
                      direction=np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))
    vol = read_file(src)
    lab = (vol.array > 0).astype(np.int64)
    out = write_label(tmp_path / "out" / name, lab, affine=vol.affine, spacing=vol.spacing)
    back = read_file(out)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, lab)
    assert back.spacing == SPACING
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    assert sorted(p.name for p in out.parent.iterdir()) == (
        ["Case04.mha"] if name.endswith(".mha") else ["Case04.mhd", "Case04.raw"])


def test_write_image_float(tmp_path):
    arr = _volume(dtype=np.float32)
    out = write_image(tmp_path / "img.mha", arr, affine=np.diag([-2.0, -2.0, 3.0, 1.0]))
    back = read_file(out)
    np.testing.assert_array_equal(back.array, arr)
    assert back.spacing == (2.0, 2.0, 3.0)
