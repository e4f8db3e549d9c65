"""Kvasir-SEG reader: RGB JPEG -> 3 channels, masks thresholded at 127, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noisyseg.data.case import normalize_intensity
from noisyseg.data.kvasir import read_kvasir
from noisyseg.errors import DataError

import format_files as w  # sibling helper module


def make_kvasir(root: Path, names=("cju0qkwl35piu0993l0dewei2", "cju0roawvklrq0799vmjorwfv")) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        w.png(root / "images" / f"{name}.jpg", rng.integers(0, 255, (16, 12, 3)), fmt="JPEG")
        mask = np.zeros((16, 12), np.uint8)
        mask[4:12, 3:9] = 255
        w.png(root / "masks" / f"{name}.jpg", mask, fmt="JPEG")
    return root


def test_kvasir_rgb_and_thresholded_masks(tmp_path):
    root = make_kvasir(tmp_path / "Kvasir-SEG")
    ds = read_kvasir(root)
    assert ds.layout == "kvasir" and ds.spatial_dims == 2 and ds.in_channels == 3 and ds.num_classes == 2
    assert len(ds.train) == 2 and ds.test == []
    case = ds.train[0].load()
    assert case.image.shape == (3, 16, 12) and case.image.dtype == np.float32
    from PIL import Image

    rgb = np.asarray(Image.open(root / "images" / f"{case.id}.jpg"))
    for c in range(3):  # each colour channel normalised on its own
        np.testing.assert_allclose(case.image[c], normalize_intensity(rgb[..., c], "RGB"), rtol=1e-5)
    assert set(np.unique(case.label).tolist()) == {0, 1}
    # JPEG smears the 0/255 edges into grey values; thresholding recovers the square closely
    truth = np.zeros((16, 12), np.int64)
    truth[4:12, 3:9] = 1
    assert (case.label != truth).sum() <= 4


def test_kvasir_threshold_value(tmp_path):
    root = tmp_path / "k"
    w.png(root / "images" / "a.png", np.full((4, 4, 3), 50))
    mask = np.array([[0, 126, 127, 128]] * 4, np.uint8)
    w.png(root / "masks" / "a.png", mask)
    case = read_kvasir(root).train[0].load()
    assert case.label[0].tolist() == [0, 0, 0, 1]


def test_kvasir_clean_masks_and_trusted(tmp_path):
    root = make_kvasir(tmp_path / "k", names=("a", "b"))
    w.png(root / "masks_clean" / "a.jpg", np.zeros((16, 12)), fmt="JPEG")
    w.png(root / "masks_clean" / "b.jpg", np.zeros((16, 12)), fmt="JPEG")
    trusted = tmp_path / "t.txt"
    trusted.write_text("b\n")
    ds = read_kvasir(root, clean_cases_file=trusted)
    assert ds.has_clean_labels and ds.trusted_ids == ["b"]
    assert ds.train[0].load().clean_label.max() == 0


def test_kvasir_missing_mask(tmp_path):
    root = make_kvasir(tmp_path / "k", names=("a", "b"))
    (root / "masks" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"masks/b\.jpg: file not found"):
        read_kvasir(root).case("b").load()


def test_kvasir_corrupt_jpeg(tmp_path):
    root = make_kvasir(tmp_path / "k", names=("a",))
    w.garbage(root / "images" / "a.jpg")
    with pytest.raises(DataError, match=r"images/a\.jpg: cannot read file"):
        read_kvasir(root).train[0].load()


def test_kvasir_mask_shape_mismatch(tmp_path):
    root = make_kvasir(tmp_path / "k", names=("a",))
    w.png(root / "masks" / "a.jpg", np.zeros((10, 12)), fmt="JPEG")
    with pytest.raises(DataError, match=r"masks/a\.jpg: label shape \(10, 12\) differs"):
        read_kvasir(root).train[0].load()
