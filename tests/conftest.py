"""Shared fixtures: tiny datasets in real on-disk layouts, and fast training overrides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the file-format writers of tests/data (format_files) serve tests in every folder
sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))


@pytest.fixture(scope="session")
def mni_small(tmp_path_factory) -> Path:
    """The 2D MNI demo dataset (PNG, Decathlon layout), 8 training and 3 test slices."""
    from noisyseg.data.demo_data import write_mni_demo

    return write_mni_demo(tmp_path_factory.mktemp("mni") / "mni", n_train=8, n_test=3, seed=0)


@pytest.fixture(scope="session")
def phantom3d(tmp_path_factory) -> Path:
    """A 3D NIfTI phantom dataset (Decathlon layout), 6 training and 2 test cases of 32x32x24."""
    from noisyseg.data.demo_data import write_phantom_demo

    return write_phantom_demo(tmp_path_factory.mktemp("ph3d") / "ph3d", n_train=6, n_test=2,
                              shape=(32, 32, 24), seed=0)


def tiny_overrides(max_steps: int = 12, patch=(96, 112), **train) -> dict:
    """A small, fast configuration for tests."""
    return {
        "data": {"patch_size": list(patch), "batch_size": 2, "val_fraction": 0.2},
        "net": {"channels": [8, 16, 32], "features": 8},
        "train": {"max_steps": max_steps, "val_every": 5, "log_every": 2, "ckpt_every": 100, **train},
    }


@pytest.fixture
def tiny():
    return tiny_overrides
