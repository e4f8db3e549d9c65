"""`noisyseg.audit.get_label_quality_scores` is a drop-in for cleanlab's segmentation scores:
same call, same orientation (lower = worse), same numbers; 2D and 3D; ignored pixels unscored."""

from __future__ import annotations

import numpy as np
import pytest

from noisyseg.audit import get_label_quality_scores, label_quality
from noisyseg.errors import ConfigError


def _noisy(shape, k=3, seed=0, flip=0.2):
    """Softmax probabilities and labels that follow them except a `flip` share of pixels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(shape[0], k, *shape[1:])) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = probs.argmax(1)
    wrong = rng.random(shape) < flip
    labels[wrong] = rng.integers(0, k, int(wrong.sum()))
    return labels, probs


@pytest.mark.parametrize("method", ["softmin", "num_pixel_issues"])
def test_equals_cleanlab_in_2d(method):
    rank = pytest.importorskip("cleanlab.segmentation.rank")  # the bench extra
    labels, probs = _noisy((4, 12, 16))
    kw = {"n_jobs": 1} if method == "num_pixel_issues" else {}  # default downsample: 1 in both
    ref_img, ref_pix = rank.get_label_quality_scores(labels, probs, method=method, verbose=False, **kw)
    img, pix = get_label_quality_scores(labels, probs, method=method, verbose=False, **kw)
    np.testing.assert_allclose(pix, ref_pix, rtol=0, atol=1e-12)
    np.testing.assert_allclose(img, ref_img, rtol=1e-10, atol=1e-12)
    assert len(set(np.round(img, 6))) > 1  # images differ: the comparison is not between constants


def test_equals_cleanlab_in_3d_and_with_a_temperature():
    rank = pytest.importorskip("cleanlab.segmentation.rank")
    labels, probs = _noisy((3, 6, 5, 4), seed=1)
    flat_l, flat_p = labels.reshape(3, 6, 20), probs.reshape(3, 3, 6, 20)  # cleanlab takes (N, H, W) only
    for method, kw in (("softmin", {"temperature": 0.5}), ("num_pixel_issues", {"downsample": 1, "n_jobs": 1})):
        ref_img, ref_pix = rank.get_label_quality_scores(flat_l, flat_p, method=method, verbose=False, **kw)
        img, pix = get_label_quality_scores(labels, probs, method=method, verbose=False, **kw)
        assert pix.shape == labels.shape
        np.testing.assert_allclose(pix.reshape(3, 6, 20), ref_pix, atol=1e-12)
        np.testing.assert_allclose(img, ref_img, rtol=1e-10, atol=1e-12)


def test_orientation_is_cleanlabs_and_the_opposite_of_label_quality():
    labels, probs = _noisy((2, 16, 16), flip=0.0)
    labels[1, :8] = (labels[1, :8] + 1) % 3  # half of image 1 is wrong
    img, _ = get_label_quality_scores(labels, probs, method="softmin")
    err, _ = label_quality(labels, probs)
    assert img[1] < img[0] and err[1] > err[0]
    img2, _ = get_label_quality_scores(labels, probs, method="num_pixel_issues", verbose=False)
    assert img2[1] < img2[0] == 1.0


def test_ignored_pixels_get_no_score_and_do_not_count():
    labels, probs = _noisy((2, 8, 8), seed=2)
    ignored = labels.copy()
    ignored[:, :4] = -1
    for method in ("softmin", "num_pixel_issues"):
        img, pix = get_label_quality_scores(ignored, probs, method=method, verbose=False)
        assert np.all(np.isnan(pix[:, :4])) and np.all(np.isfinite(pix[:, 4:]))
        # the same as scoring the annotated half alone
        img_half, _ = get_label_quality_scores(labels[:, 4:], probs[:, :, 4:], method=method, verbose=False)
        np.testing.assert_allclose(img, img_half, atol=1e-12)


def test_downsample_flags_only_disagreeing_pixels_and_checks_divisibility():
    labels, probs = _noisy((2, 8, 8), seed=3, flip=0.4)
    img, _ = get_label_quality_scores(labels, probs, method="num_pixel_issues", downsample=2, verbose=False)
    disagree = (labels != probs.argmax(1)).reshape(2, -1).mean(1)
    assert np.all(img >= 1.0 - disagree - 1e-12) and np.all(img <= 1.0)
    with pytest.raises(ConfigError, match="downsample 3"):
        get_label_quality_scores(labels, probs, method="num_pixel_issues", downsample=3)
    with pytest.raises(ConfigError, match="did you mean 'softmin'"):
        get_label_quality_scores(labels, probs, method="softmn")


def test_label_quality_gives_ignored_voxels_no_score():
    labels, probs = _noisy((2, 8, 8), seed=4)
    ignored = labels.copy()
    ignored[:, :, :3] = -1
    cases, vox = label_quality(ignored, probs, method="threshold", case_score_method="mean")
    half, _ = label_quality(labels[:, :, 3:], probs[:, :, :, 3:], method="threshold", case_score_method="mean")
    assert all(np.all(np.isnan(v[:, :3])) and np.all(np.isfinite(v[:, 3:])) for v in vox)
    np.testing.assert_allclose(cases, half, atol=1e-6)
