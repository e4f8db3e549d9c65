from __future__ import annotations

import math

import numpy as np
import pytest

from noisyseg.errors import DataError
from noisyseg.noise import noise_stats


def test_noise_stats_hand_computed_2d():
    clean = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 0, 0]])
    noisy = np.array([[0, 1, 1, 1],
                      [0, 0, 1, 0],
                      [2, 0, 0, 0]])
    s = noise_stats(clean, noisy, num_classes=3)
    # class 1: clean 4, noisy 4, overlap 3 -> 6/8; class 2: clean 2, noisy 1, overlap 1 -> 2/3
    assert s["dice_1"] == pytest.approx(0.75)
    assert s["dice_2"] == pytest.approx(2 / 3)
    assert s["dice"] == pytest.approx((0.75 + 2 / 3) / 2)
    assert s["noise_level"] == pytest.approx(1 - s["dice"])
    assert s["changed_fraction"] == pytest.approx(3 / 12)
    assert s["changed_frac_0"] == pytest.approx(1 / 6)  # one of six background pixels
    assert s["changed_frac_1"] == pytest.approx(1 / 4)
    assert s["changed_frac_2"] == pytest.approx(1 / 2)


def test_noise_stats_3d_absent_classes_and_identity():
    clean = np.zeros((4, 4, 3), dtype=np.uint8)
    clean[1:3, 1:3, 1] = 1
    s = noise_stats(clean, clean.copy(), num_classes=3)
    assert s["dice"] == 1.0 and s["changed_fraction"] == 0.0
    assert math.isnan(s["dice_2"]) and math.isnan(s["changed_frac_2"])
    noisy = clean.copy()
    noisy[0, 0, 0] = 2  # class only in noisy: dice_2 = 0 and counts in the mean
    s = noise_stats(clean, noisy, num_classes=3)
    assert s["dice_2"] == 0.0 and s["dice"] == pytest.approx(0.5)
    assert s["changed_fraction"] == pytest.approx(1 / 48)
    empty = np.zeros((3, 3), dtype=np.uint8)
    assert noise_stats(empty, empty, 2)["dice"] == 1.0


def test_noise_stats_errors():
    a = np.zeros((3, 3), dtype=np.uint8)
    with pytest.raises(DataError, match="shape"):
        noise_stats(a, np.zeros((3, 4), dtype=np.uint8), 2)
    with pytest.raises(DataError, match="num_classes"):
        noise_stats(a, a + 2, 2)
