from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from noisyseg.errors import ConfigError
from noisyseg.noise import choose_clean_cases, morph


@pytest.mark.parametrize("which", ["blob2d", "blob3d"])
def test_dilation_only_grows_erosion_only_shrinks(which, request):
    label = request.getfixturevalue(which)
    ops = set()
    for seed in range(12):
        noisy, info = morph(label, rng=np.random.default_rng(seed))
        ops.add(info["op"])
        assert 3 <= info["size"] <= 15
        clean, new = label > 0, noisy > 0
        if info["op"] == "dilate":
            assert (new >= clean).all() and new.sum() > clean.sum()
        else:
            assert (new <= clean).all() and new.sum() < clean.sum()
    assert ops == {"dilate", "erode"}  # both are drawn


@pytest.mark.parametrize("which", ["blob2d", "blob3d"])
@pytest.mark.parametrize("op", ["dilate", "erode"])
@pytest.mark.parametrize("size", [3, 7, 15])
def test_binary_result_equals_scipy_morphology_with_a_cube(which, op, size, request):
    label = request.getfixturevalue(which)
    mask = np.pad(label > 0, size)  # away from the border, where conventions differ
    noisy, _ = morph(mask.astype(np.uint8), rng=np.random.default_rng(0), op=op, size=size)
    # a cube of side 2r+1 is r successive 3-cubes (cheaper than one 15^3 element)
    cube3 = np.ones((3,) * mask.ndim, dtype=bool)
    fn = ndimage.binary_dilation if op == "dilate" else ndimage.binary_erosion
    ref = fn(mask, structure=cube3, iterations=size // 2)
    np.testing.assert_array_equal(noisy > 0, ref)


def test_multiclass_dilation_keeps_every_class_pixel_and_erosion_only_removes(multi3d):
    d, _ = morph(multi3d, rng=np.random.default_rng(0), op="dilate", size=5)
    fg = multi3d > 0
    np.testing.assert_array_equal(d[fg], multi3d[fg])  # grows into background only
    assert (d > 0).sum() > fg.sum()
    e, _ = morph(multi3d, rng=np.random.default_rng(0), op="erode", size=5)
    kept = e > 0
    assert (kept <= fg).all() and kept.sum() < fg.sum()
    np.testing.assert_array_equal(e[kept], multi3d[kept])  # no class changes, only removal
    assert set(np.unique(e)) <= {0, 1, 3} and set(np.unique(d)) <= {0, 1, 3}


def test_dilated_background_takes_the_nearest_class():
    lab = np.zeros((9, 30), dtype=np.uint8)
    lab[4, 5] = 1
    lab[4, 24] = 2
    noisy, _ = morph(lab, rng=np.random.default_rng(0), op="dilate", size=5)
    assert (noisy[2:7, 3:8] == 1).all() and (noisy[2:7, 22:27] == 2).all()
    assert (noisy > 0).sum() == 50


def test_physical_element_is_thinner_along_coarse_axes(blob3d):
    noisy, info = morph(
        blob3d, rng=np.random.default_rng(0), op="dilate", size=9,
        spacing=(1.0, 1.0, 3.0), physical=True,
    )
    assert info["element"] == [9, 9, 3]
    assert info["spacing"] == [1.0, 1.0, 3.0]


def test_bad_morph_parameters():
    lab = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(ConfigError, match="op"):
        morph(lab, rng=np.random.default_rng(0), op="open")
    with pytest.raises(ConfigError, match="size_range"):
        morph(lab, rng=np.random.default_rng(0), size_range=(5, 3))


def test_choose_clean_cases():
    ids = [f"case{i:02d}" for i in range(80)]
    a = choose_clean_cases(ids, n_clean=8, rng=np.random.default_rng(0))
    assert len(a) == 8 and a <= set(ids)
    b = choose_clean_cases(list(reversed(ids)), n_clean=8, rng=np.random.default_rng(0))
    assert a == b  # order of the ids does not matter
    c = choose_clean_cases(ids, n_clean=8, rng=np.random.default_rng(1))
    assert a != c
    assert len(choose_clean_cases(ids, clean_fraction=0.5, rng=np.random.default_rng(0))) == 40
    assert choose_clean_cases(ids, clean_fraction=0.0, rng=np.random.default_rng(0)) == set()
    with pytest.raises(ConfigError):
        choose_clean_cases(ids, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError):
        choose_clean_cases(ids, n_clean=2, clean_fraction=0.1, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="n_clean"):
        choose_clean_cases(ids, n_clean=81, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="clean_fraction"):
        choose_clean_cases(ids, clean_fraction=1.5, rng=np.random.default_rng(0))
