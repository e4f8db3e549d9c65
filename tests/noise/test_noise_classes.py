from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from noisyseg.errors import ConfigError
from noisyseg.noise import classswap, flip


def components(label):
    st = ndimage.generate_binary_structure(label.ndim, label.ndim)
    out = []
    for k in np.unique(label):
        if k == 0:
            continue
        lab, n = ndimage.label(label == k, structure=st)
        out += [(int(k), lab == i) for i in range(1, n + 1)]
    return out


@pytest.mark.parametrize("which", ["multi2d", "multi3d"])
def test_classswap_keeps_shapes_and_swaps_whole_components(which, request):
    label = request.getfixturevalue(which)
    comps = components(label)
    noisy, info = classswap(label, rng=np.random.default_rng(0), fraction=0.5)
    np.testing.assert_array_equal(noisy > 0, label > 0)  # shapes are kept
    swapped = 0
    for k, m in comps:
        vals = np.unique(noisy[m])
        assert vals.size == 1  # a component keeps one value
        if vals[0] != k:
            swapped += 1
            assert vals[0] in (1, 3)
    assert swapped == info["n_swapped"] == round(0.5 * len(comps))
    assert info["n_components"] == len(comps)


def test_classswap_fraction_one_swaps_all_and_binary_cannot_swap(multi2d, blob2d):
    noisy, _ = classswap(multi2d, rng=np.random.default_rng(0), fraction=1.0)
    fg = multi2d > 0
    assert (noisy[fg] != multi2d[fg]).all()
    out, info = classswap(blob2d, rng=np.random.default_rng(0), fraction=1.0)
    np.testing.assert_array_equal(out, blob2d)
    assert info["n_swapped"] == 0


@pytest.mark.parametrize("shape", [(200, 200), (60, 60, 30)])
@pytest.mark.parametrize("rate", [0.02, 0.1, 0.3])
def test_flip_rate_matches(shape, rate):
    rng = np.random.default_rng(0)
    label = rng.choice(np.array([0, 1, 3], dtype=np.uint8), size=shape, p=[0.7, 0.2, 0.1])
    noisy, info = flip(label, rng=np.random.default_rng(1), rate=rate)
    changed = (noisy != label).mean()
    n = label.size
    assert abs(changed - rate) < 4 * np.sqrt(rate * (1 - rate) / n) + 1e-9
    assert set(np.unique(noisy)) <= {0, 1, 3}
    # flips are spread over the classes: every class loses about `rate` of its pixels
    for k in (0, 1, 3):
        m = label == k
        assert abs((noisy[m] != k).mean() - rate) < 0.02


def test_flip_zero_rate_and_range(blob2d):
    out, _ = flip(blob2d, rng=np.random.default_rng(0), rate=0.0)
    np.testing.assert_array_equal(out, blob2d)
    with pytest.raises(ConfigError, match="rate"):
        flip(blob2d, rng=np.random.default_rng(0), rate=1.0)
    with pytest.raises(ConfigError, match="fraction"):
        classswap(blob2d, rng=np.random.default_rng(0), fraction=-0.1)
