from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from noisyseg.errors import ConfigError
from noisyseg.noise import affine, ellipse, noise_stats, polygon


def test_ellipse_is_inscribed_in_the_bounding_box():
    lab = np.zeros((40, 60), dtype=np.uint8)
    lab[10:31, 5:46] = 1  # 21 x 41 rectangle
    lab[10:15, 5:46] = 1
    lab[25:31, 40:46] = 1
    out, info = ellipse(lab, rng=np.random.default_rng(0))
    yy, xx = np.mgrid[:40, :60]
    ref = ((yy - 20) / 10.5) ** 2 + ((xx - 25) / 20.5) ** 2 <= 1
    np.testing.assert_array_equal(out > 0, ref)
    assert info["n_replaced"] == 1


def test_ellipse_per_slice_in_3d_keeps_class_and_bbox(multi3d):
    out, info = ellipse(multi3d, rng=np.random.default_rng(0))
    for z in range(multi3d.shape[-1]):
        for k in (1, 3):
            a, b = multi3d[..., z] == k, out[..., z] == k
            if not a.any():
                continue
            # each class's new pixels lie within the bounding box of its clean pixels
            sl = ndimage.find_objects(a.astype(np.uint8))[0]
            inside = np.zeros_like(a)
            inside[sl] = True
            assert (b <= inside).all()
    n_slices = int((multi3d > 0).any(axis=(0, 1)).sum())
    assert info["n_structures"] > n_slices  # several structures per slice


def test_polygon_roughly_covers_each_structure(blob2d, blob3d):
    for label in (blob2d, blob3d):
        for seed in range(4):
            out, _ = polygon(label, rng=np.random.default_rng(seed))
            clean, new = label > 0, out > 0
            recall = (clean & new).sum() / clean.sum()
            assert recall > 0.8
            assert noise_stats(label, out, 2)["dice"] > 0.75
            assert not np.array_equal(out, label)
    # empty slices stay empty in 3D
    empty = ~(blob3d > 0).any(axis=(0, 1))
    assert empty.any()
    out, _ = polygon(blob3d, rng=np.random.default_rng(0))
    assert not (out[..., empty] > 0).any()


def test_polygon_vertices_validated(blob2d):
    with pytest.raises(ConfigError, match="vertices"):
        polygon(blob2d, rng=np.random.default_rng(0), vertices=(3, 8))


@pytest.mark.parametrize("which", ["blob2d", "blob3d"])
def test_affine_with_zero_ranges_is_identity(which, request):
    label = request.getfixturevalue(which)
    out, _ = affine(label, rng=np.random.default_rng(0), max_angle=0, max_shift=0, max_scale=0)
    np.testing.assert_array_equal(out, label)


def test_affine_translation_only_moves_each_structure_rigidly():
    lab = np.zeros((64, 64), dtype=np.uint8)
    lab[10:20, 10:18] = 1
    lab[40:52, 30:50] = 2
    out, info = affine(lab, rng=np.random.default_rng(3), max_angle=0, max_scale=0, max_shift=6)
    assert info["n_structures"] == 2
    for rec, k in zip(info["structures"], (1, 2)):
        a, b = lab == k, out == k
        assert a.sum() == b.sum()  # same shape, only moved
        shift = np.array(ndimage.center_of_mass(b)) - np.array(ndimage.center_of_mass(a))
        np.testing.assert_allclose(shift, np.round(rec["shift"]), atol=0.51)


def test_affine_moves_nested_classes_together(multi2d):
    out, _ = affine(multi2d, rng=np.random.default_rng(1), max_angle=10, max_shift=5)
    # the class-3 core inside the class-1 blob is still surrounded by class 1
    core, _ = ndimage.label(out == 3)
    sizes = ndimage.sum(np.ones_like(core), core, index=range(1, core.max() + 1))
    big = np.argmax(sizes) + 1
    ring = ndimage.binary_dilation(core == big) & ~(core == big)
    assert (out[ring] == 1).mean() > 0.9
    assert not np.array_equal(out, multi2d)
