"""Fixtures for the noise tests; the generators of synthetic labels live in noise_blobs."""

from __future__ import annotations

import numpy as np
import pytest
from noise_blobs import make_blob, multiclass


@pytest.fixture
def blob2d():
    rng = np.random.default_rng(1)
    return make_blob((96, 96), (48, 46), (22, 16), rng).astype(np.uint8)


@pytest.fixture
def blob3d():
    rng = np.random.default_rng(2)
    return make_blob((48, 44, 24), (24, 22, 12), (14, 11, 7), rng).astype(np.int16)


@pytest.fixture
def multi2d():
    return multiclass((96, 96), np.random.default_rng(3))


@pytest.fixture
def multi3d():
    return multiclass((48, 48, 20), np.random.default_rng(4))
