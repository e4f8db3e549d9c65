"""Tests of the procedural phantom generator."""

from __future__ import annotations

import time

import numpy as np
import pytest

from noisyseg.data.phantoms import make_phantom, smooth_noise


def _ph(shape, seed, **kw):
    return make_phantom(shape, np.random.default_rng(seed), **kw)


@pytest.mark.parametrize("shape", [(48, 40), (32, 28, 20)])
def test_shapes_and_dtypes(shape):
    image, label = _ph(shape, 0)
    assert image.shape == shape and label.shape == shape
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert np.all(np.isfinite(image))


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 24)])
def test_deterministic_per_seed_and_different_across_seeds(shape):
    a_img, a_lab = _ph(shape, 7, num_classes=3)
    b_img, b_lab = _ph(shape, 7, num_classes=3)
    c_img, c_lab = _ph(shape, 8, num_classes=3)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)
    assert not np.allclose(a_img, c_img)


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 24)])
def test_foreground_fraction_is_a_realistic_minority(shape):
    fractions = [float((_ph(shape, s)[1] > 0).mean()) for s in range(10)]
    assert all(0.05 <= f <= 0.25 for f in fractions), fractions
    assert max(fractions) - min(fractions) > 0.02  # the fraction itself is random


@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_label_values_within_classes_and_all_present(num_classes):
    for shape in [(40, 40), (24, 24, 16)]:
        _, label = _ph(shape, 3, num_classes=num_classes)
        assert set(np.unique(label).tolist()) == set(range(num_classes))


def test_substructure_touches_the_outer_structure():
    # class 2 is carved out of class 1: every piece of it borders class 1, and it is a
    # minority of the whole structure
    from scipy import ndimage

    for seed in range(4):
        _, label = _ph((48, 48, 32), seed, num_classes=3)
        inner = label == 2
        comps, n = ndimage.label(inner)
        assert n >= 1
        ring = ndimage.binary_dilation(inner) & ~inner
        for k in range(1, n + 1):
            touching = ring & ndimage.binary_dilation(comps == k)
            assert np.any(label[touching] == 1)
        assert inner.sum() < 0.6 * (label > 0).sum()


def test_classes_have_distinct_intensities():
    image, label = _ph((64, 64, 32), 2, num_classes=3, noise_std=0.06)
    means = [float(image[label == k].mean()) for k in range(3)]
    assert min(abs(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3)) > 0.1
    assert means[0] < min(means[1:])  # background darker than the structures


def test_noise_and_bias_are_present():
    image, label = _ph((64, 64), 1, noise_std=0.05, bias_strength=0.0, texture_std=0.0)
    flat = image[(label == 0)]
    assert 0.03 < float(flat.std()) < 0.1
    plain, _ = _ph((64, 64), 1, noise_std=0.0, bias_strength=0.0, texture_std=0.0)
    biased, _ = _ph((64, 64), 1, noise_std=0.0, bias_strength=0.3, texture_std=0.0)
    assert not np.allclose(plain, biased)


def test_smooth_noise_is_normalised_and_smooth():
    field = smooth_noise((64, 64), np.random.default_rng(0), sigma=4.0)
    assert abs(float(field.mean())) < 1e-5 and abs(float(field.std()) - 1) < 1e-4
    # neighbouring values are strongly correlated
    assert np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1] > 0.9


@pytest.mark.parametrize("shape", [(10,), (8, 8, 8, 8), (3, 20)])
def test_bad_shapes_rejected(shape):
    with pytest.raises(ValueError):
        _ph(shape, 0)


def test_64_cube_is_fast():
    _ph((16, 16, 16), 0)  # warm-up
    t0 = time.perf_counter()
    _ph((64, 64, 64), 0, num_classes=3)
    assert time.perf_counter() - t0 < 1.0
