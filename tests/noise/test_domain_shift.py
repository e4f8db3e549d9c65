"""The simulated source scanner of SFDA-Noise: identity when every effect is off, seeded,
z-scored, a real contrast change otherwise, and a Decathlon copy with the clean labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from noisyseg.data import open_dataset
from noisyseg.errors import ConfigError
from noisyseg.noise.domain_shift import ScannerShift, shift_image, write_shifted_source


def _image(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1, 12, 10, 8)).astype(np.float32) * 3 + 5


def test_no_effect_gives_the_z_scored_input():
    img = _image()
    out = shift_image(img, ScannerShift(gamma=1.0, bias=0.0, blur_sigma=0.0, noise_std=0.0), np.random.default_rng(0))
    z = (img - img.mean()) / img.std()
    np.testing.assert_allclose(out, z, atol=1e-5)


def test_shift_is_seeded_z_scored_and_changes_contrast():
    img = _image()
    a = shift_image(img, ScannerShift(), np.random.default_rng(3))
    b = shift_image(img, ScannerShift(), np.random.default_rng(3))
    c = shift_image(img, ScannerShift(), np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.mean()) < 1e-4 and abs(a.std() - 1) < 1e-4
    z = (img - img.mean()) / img.std()
    assert np.corrcoef(a.ravel(), z.ravel())[0, 1] < 0.99  # a different image, not a rescaling


def test_shifted_source_dataset_keeps_clean_labels(phantom3d, tmp_path):
    out = write_shifted_source(phantom3d, tmp_path / "src", seed=1, params={"gamma": 0.7}, progress=False)
    ds, orig = open_dataset(out), open_dataset(phantom3d)
    assert [r.id for r in ds.train] == [r.id for r in orig.train] and ds.test == []
    c, o = ds.train[0].load(), orig.train[0].load()
    np.testing.assert_array_equal(c.label, o.label)
    assert c.spacing == pytest.approx(o.spacing)
    assert json.loads((out / "scanner_shift.json").read_text())["gamma"] == 0.7
    with pytest.raises(ConfigError, match="source_params.gama"):
        write_shifted_source(phantom3d, tmp_path / "x", params={"gama": 1}, progress=False)
