"""Surface metrics against a brute-force reference, hand-computed examples and the empty-mask policy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from noisyseg.metrics import (asd, case_metrics, dice, dice_per_class, hd95, iou, surface_distances,
                              surface_metrics, worst_distance)


def _blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A random smooth blob (possibly several components, possibly touching the border)."""
    while True:
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 2.5))
        mask = noise > np.quantile(noise, rng.uniform(0.6, 0.9))
        if mask.any():
            return mask


def _brute_surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels by explicit face-neighbour shifts with zero padding (no binary_erosion)."""
    padded = np.pad(mask, 1)
    interior = mask.copy()
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            interior &= np.roll(padded, shift, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return mask & ~interior


def _brute_sets(pred, truth, spacing):
    sp = np.asarray(spacing, dtype=float)
    cp = np.argwhere(_brute_surface(pred)) * sp
    ct = np.argwhere(_brute_surface(truth)) * sp
    d = cdist(cp, ct)
    return d.min(axis=1), d.min(axis=0)


def _brute_metrics(pred, truth, spacing, convention):
    d_pt, d_tp = _brute_sets(pred, truth, spacing)
    if convention == "monai":
        return max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)), np.concatenate([d_pt, d_tp]).mean()
    return np.percentile(np.concatenate([d_pt, d_tp]), 95), d_pt.mean()


CASES = [
    ((37, 29), (0.7, 1.3)),
    ((24, 41), (2.0, 0.5)),
    ((18, 22, 13), (0.625, 0.625, 2.5)),
    ((15, 19, 21), (1.2, 0.8, 0.5)),
]


@pytest.mark.parametrize("shape,spacing", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["auto", "edt", "kdtree"])
def test_matches_brute_force(shape, spacing, seed, method):
    rng = np.random.default_rng(seed * 100 + len(shape))
    pred, truth = _blob(rng, shape), _blob(rng, shape)
    d_pt, d_tp = surface_distances(pred, truth, spacing, method=method)
    b_pt, b_tp = _brute_sets(pred, truth, spacing)
    # argwhere and boolean indexing both follow C order, so the sets align element-wise
    np.testing.assert_allclose(d_pt, b_pt, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(d_tp, b_tp, rtol=1e-10, atol=1e-10)
    for convention in ("monai", "medpy"):
        got = surface_metrics(pred, truth, spacing, convention=convention, method=method)
        want = _brute_metrics(pred, truth, spacing, convention)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=convention)
    inter, n_p, n_t = (pred & truth).sum(), pred.sum(), truth.sum()
    assert dice(pred, truth) == pytest.approx(2 * inter / (n_p + n_t))
    assert iou(pred, truth) == pytest.approx(inter / (n_p + n_t - inter))


def test_blob_touching_border_and_small_blob_far_away():
    # the crop must not change which voxels are surface when a mask touches the image border
    truth = np.zeros((12, 14, 9), bool)
    truth[:, :5, :] = True
    pred = np.zeros_like(truth)
    pred[10:, 12:, 7:] = True
    spacing = (0.9, 1.1, 3.0)
    for convention in ("monai", "medpy"):
        for method in ("edt", "kdtree"):
            np.testing.assert_allclose(surface_metrics(pred, truth, spacing, convention=convention, method=method),
                                       _brute_metrics(pred, truth, spacing, convention), rtol=1e-12)


def test_hand_computed_offset_squares():
    # two 5x5 squares offset by 2 rows, spacing 0.5 mm: each surface has 16 voxels whose distances
    # to the other surface are six 0, four 0.5 mm and six 1.0 mm -> mean 0.5, p95 1.0
    pred = np.zeros((20, 20), bool)
    pred[5:10, 5:10] = True
    truth = np.zeros_like(pred)
    truth[7:12, 5:10] = True
    for convention in ("monai", "medpy"):
        assert surface_metrics(pred, truth, 0.5, convention=convention) == pytest.approx((1.0, 0.5))
    assert dice(pred, truth) == pytest.approx(0.6)
    assert iou(pred, truth) == pytest.approx(15 / 35)


def test_hand_computed_conventions_differ():
    # truth: 3x3 square (8 surface voxels); pred: the same square plus one voxel 4 columns away.
    # spacing (1.0, 0.5): d(P->T) = [0]*8 + [2.0], d(T->P) = [0]*8
    truth = np.zeros((10, 10), bool)
    truth[0:3, 0:3] = True
    pred = truth.copy()
    pred[0, 6] = True
    sp = (1.0, 0.5)
    # monai: max(p95 of 9 values -> 0.6*2.0, 0) ; symmetric mean 2/17
    assert hd95(pred, truth, sp) == pytest.approx(1.2)
    assert asd(pred, truth, sp) == pytest.approx(2.0 / 17)
    # medpy: p95 of 17 values -> 0.2*2.0 ; directed mean pred->truth 2/9
    assert hd95(pred, truth, sp, convention="medpy") == pytest.approx(0.4)
    assert asd(pred, truth, sp, convention="medpy") == pytest.approx(2.0 / 9)
    # the medpy ASD is directed: swapping the inputs gives 0
    assert asd(truth, pred, sp, convention="medpy") == pytest.approx(0.0)


def test_spacing_is_used_not_voxels():
    pred = np.zeros((30, 30), bool)
    pred[5:10, 5:10] = True
    truth = np.zeros_like(pred)
    truth[5:10, 15:20] = True  # shifted 10 columns
    assert hd95(pred, truth, (1.0, 1.0)) == pytest.approx(10.0)
    assert hd95(pred, truth, (1.0, 0.3)) == pytest.approx(3.0)


def test_empty_mask_policy():
    shape, sp = (8, 6, 4), (0.5, 1.0, 3.0)
    empty = np.zeros(shape, bool)
    some = empty.copy()
    some[2:4, 2:4, 1:3] = True
    worst = float(np.sqrt(4.0**2 + 6.0**2 + 12.0**2))  # extent 4 x 6 x 12 mm
    assert worst_distance(shape, sp) == pytest.approx(worst)
    for convention in ("monai", "medpy"):
        assert np.isnan(surface_metrics(empty, empty, sp, convention=convention)).all()
        assert surface_metrics(some, empty, sp, convention=convention) == pytest.approx((worst, worst))
        assert surface_metrics(empty, some, sp, convention=convention) == pytest.approx((worst, worst))
    assert np.isnan(dice(empty, empty)) and np.isnan(iou(empty, empty))
    assert dice(some, empty) == 0.0 and iou(empty, some) == 0.0
    with pytest.raises(ValueError):
        surface_distances(some, empty, sp)


def test_bad_inputs():
    a = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="shape"):
        hd95(a, np.ones((4, 5), bool), 1.0)
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="convention"):
        hd95(a, a, 1.0, convention="itk")
    with pytest.raises(ValueError, match="method"):
        surface_metrics(a, a, 1.0, method="fast")


def test_case_metrics_classes_and_regions():
    rng = np.random.default_rng(7)
    shape, sp = (20, 18, 12), (0.8, 0.8, 2.0)
    truth = rng.integers(0, 1, shape)
    truth[_blob(rng, shape)] = 1
    truth[_blob(rng, shape)] = 3
    pred = truth.copy()
    pred[_blob(rng, shape)] = 2
    pred[:3] = 0  # class 3 and 1 partly missed
    res = case_metrics(pred, truth, num_classes=5, spacing=sp, regions={"WT": [1, 2, 3], "TC": [1, 3]})
    assert list(res)[:5] == ["dice_1", "iou_1", "hd95_1", "asd_1", "dice_2"]
    assert "dice_0" not in res
    for c in (1, 2, 3):
        p, t = pred == c, truth == c
        assert res[f"dice_{c}"] == pytest.approx(dice(p, t))
        assert res[f"iou_{c}"] == pytest.approx(iou(p, t))
        assert (res[f"hd95_{c}"], res[f"asd_{c}"]) == pytest.approx(surface_metrics(p, t, sp))
    # class 4 absent from both -> undefined
    assert all(np.isnan(res[f"{m}_4"]) for m in ("dice", "iou", "hd95", "asd"))
    p, t = np.isin(pred, [1, 2, 3]), np.isin(truth, [1, 2, 3])
    assert res["dice_WT"] == pytest.approx(dice(p, t))
    assert (res["hd95_WT"], res["asd_WT"]) == pytest.approx(surface_metrics(p, t, sp))
    with_bg = case_metrics(pred, truth, num_classes=5, spacing=sp, include_background=True, convention="medpy")
    assert with_bg["dice_0"] == pytest.approx(dice(pred == 0, truth == 0))
    assert with_bg["asd_0"] == pytest.approx(asd(pred == 0, truth == 0, sp, convention="medpy"))
    with pytest.raises(ValueError, match="outside"):
        case_metrics(pred, truth, num_classes=3, spacing=sp)


def test_dice_per_class():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, (16, 16, 8))
    pred = np.where(rng.random(truth.shape) < 0.2, rng.integers(0, 3, truth.shape), truth)
    got = dice_per_class(pred, truth, 4)
    for c in range(3):
        assert got[c] == pytest.approx(dice(pred == c, truth == c))
    assert np.isnan(got[3])


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_matches_monai():
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(11)
    shape, sp = (22, 20, 14), (0.7, 0.9, 1.8)
    pred, truth = _blob(rng, shape), _blob(rng, shape)
    yp = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    yt = torch.from_numpy(np.stack([~truth, truth])[None].astype(np.float32))
    m_hd = float(compute_hausdorff_distance(yp, yt, percentile=95, spacing=sp)[0, 0])
    m_asd = float(compute_average_surface_distance(yp, yt, symmetric=True, spacing=sp)[0, 0])
    assert surface_metrics(pred, truth, sp) == pytest.approx((m_hd, m_asd), rel=1e-5)


def test_matches_medpy():
    medpy_binary = pytest.importorskip("medpy.metric.binary")
    for seed, (shape, sp) in enumerate(CASES):
        rng = np.random.default_rng(seed + 50)
        pred, truth = _blob(rng, shape), _blob(rng, shape)
        want = (medpy_binary.hd95(pred, truth, voxelspacing=sp), medpy_binary.asd(pred, truth, voxelspacing=sp))
        assert surface_metrics(pred, truth, sp, convention="medpy") == pytest.approx(want, rel=1e-12)
        assert dice(pred, truth) == pytest.approx(medpy_binary.dc(pred, truth))
        assert iou(pred, truth) == pytest.approx(medpy_binary.jc(pred, truth))
