"""Labels are written in a dtype wide enough for their values: 300 reads back as 300."""

from __future__ import annotations

import numpy as np
import pytest

from noisyseg.errors import DataError
from noisyseg.io import read_file, write_label


def _label(high: int) -> np.ndarray:
    lab = np.zeros((6, 5, 4), dtype=np.int64)
    lab[1, 2, 3] = 1
    lab[2, 3, 0] = high
    return lab


@pytest.mark.parametrize("name", ["lab.nii.gz", "lab.mha", "lab.mhd", "lab.h5"])
@pytest.mark.parametrize("high, dtype", [(255, np.uint8), (300, np.uint16), (70000, np.int32)])
def test_label_values_survive_the_round_trip(tmp_path, name, high, dtype):
    lab = _label(high)
    back = read_file(write_label(tmp_path / name, lab), h5_key="label").array
    assert back.dtype == dtype  # the narrowest that holds the values: uint8 stays uint8
    np.testing.assert_array_equal(back, lab)


@pytest.mark.parametrize("high, dtype", [(255, np.uint8), (300, np.uint16), (65535, np.uint16)])
def test_png_labels_are_16_bit_above_255(tmp_path, high, dtype):
    lab = _label(high)[..., 0]
    back = read_file(write_label(tmp_path / "lab.png", lab)).array
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, lab)


def test_png_refuses_a_value_above_16_bit(tmp_path):
    with pytest.raises(DataError, match=r"lab\.png: label value 70000 is too large for a PNG"):
        write_label(tmp_path / "lab.png", _label(70000)[..., 0])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["lab.nii.gz", "lab.png", "lab.mha"])
def test_negative_label_values_name_the_file(tmp_path, name):
    lab = _label(1)[..., 0] if name.endswith(".png") else _label(1)
    lab[0, 0] = -1  # an unmapped ignore index would wrap to 255 in uint8
    with pytest.raises(DataError, match=rf"lab\.{name.split('.', 1)[1]}: label value -1 is negative"):
        write_label(tmp_path / name, lab)
    assert not list(tmp_path.iterdir())
