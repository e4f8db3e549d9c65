from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from noisyseg.errors import ConfigError
from noisyseg.noise import markov
from noisyseg.noise.markov import boundary_mask


def distance_to_boundary(label):
    """City-block distance of every voxel to the nearest clean boundary voxel."""
    return ndimage.distance_transform_cdt(~boundary_mask(label), metric="taxicab")


@pytest.mark.parametrize("which", ["blob2d", "blob3d", "multi2d", "multi3d"])
@pytest.mark.parametrize("iterations", [1, 3, 8])
def test_changes_stay_within_iterations_of_the_boundary(which, iterations, request):
    label = request.getfixturevalue(which)
    dist = distance_to_boundary(label)
    for seed in range(3):
        noisy, info = markov(label, rng=np.random.default_rng(seed), iterations=iterations,
                             preference=0.5, variance=0.2)
        changed = noisy != label
        assert changed.any()
        assert dist[changed].max() <= iterations
    assert len(info["thetas"]) == iterations


@pytest.mark.parametrize("which", ["blob2d", "blob3d"])
def test_preference_sets_expansion_or_shrinkage(which, request):
    label = request.getfixturevalue(which)
    grow, _ = markov(label, rng=np.random.default_rng(0), iterations=5, preference=1.0, variance=0.0)
    shrink, _ = markov(label, rng=np.random.default_rng(0), iterations=5, preference=0.0, variance=0.0)
    assert ((grow > 0) >= (label > 0)).all() and (grow > 0).sum() > (label > 0).sum()
    assert ((shrink > 0) <= (label > 0)).all() and (shrink > 0).sum() < (label > 0).sum()
    # a mild bias moves the area the same way on average
    areas = [
        (markov(label, rng=np.random.default_rng(s), iterations=8, preference=0.7)[0] > 0).sum()
        for s in range(5)
    ]
    assert np.mean(areas) > (label > 0).sum()


def test_more_iterations_more_change(blob3d):
    few = [(markov(blob3d, rng=np.random.default_rng(s), iterations=2)[0] != blob3d).sum() for s in range(3)]
    many = [(markov(blob3d, rng=np.random.default_rng(s), iterations=12)[0] != blob3d).sum() for s in range(3)]
    assert np.mean(many) > 2 * np.mean(few)


def test_zero_iterations_and_uniform_labels_are_unchanged(blob2d):
    out, _ = markov(blob2d, rng=np.random.default_rng(0), iterations=0)
    np.testing.assert_array_equal(out, blob2d)
    flat = np.ones((10, 10, 4), dtype=np.uint8)
    out, _ = markov(flat, rng=np.random.default_rng(0), iterations=5)
    np.testing.assert_array_equal(out, flat)


def test_bad_markov_parameters(blob2d):
    with pytest.raises(ConfigError, match="preference"):
        markov(blob2d, rng=np.random.default_rng(0), preference=1.5)
    with pytest.raises(ConfigError, match="variance"):
        markov(blob2d, rng=np.random.default_rng(0), variance=-0.1)
