"""Resampling to a target spacing: grid sizes, label values kept, geometry updated, a
round trip of probabilities, and a run trained on a coarser grid predicting on the input grid."""

from __future__ import annotations

import numpy as np
import pytest

from noisyseg.data.case import Case
from noisyseg.data.resample import resample_case, restore_probs, zoom_factors


def _case(shape=(20, 16, 12), spacing=(0.5, 0.5, 1.0)) -> Case:
    rng = np.random.default_rng(0)
    label = np.zeros(shape, np.int64)
    label[5:15, 4:12, 3:9] = 1
    label[8:12, 6:10, 4:8] = 2
    return Case("c", rng.normal(size=(2, *shape)).astype(np.float32), label, spacing,
                np.diag([*spacing, 1.0]), None, clean_label=label.copy())


def test_resampled_case_has_the_target_grid_and_keeps_label_values():
    c = _case()
    r = resample_case(c, [1.0, 1.0, 1.0])
    assert zoom_factors(c.spacing, [1.0, 1.0, 1.0]) == (0.5, 0.5, 1.0)
    assert r.image.shape == (2, 10, 8, 12) and r.label.shape == (10, 8, 12) == r.clean_label.shape
    assert set(np.unique(r.label)) == {0, 1, 2}  # nearest neighbour: no new values
    assert r.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(np.diag(r.affine)[:3], [1.0, 1.0, 1.0])
    # the first new voxel's centre is the centre of the two old voxels it covers (x, y), 0 in z
    np.testing.assert_allclose(r.affine[:3, 3], [0.25, 0.25, 0.0])
    # the foreground volume in mm^3 is preserved up to the grid's rounding
    assert abs((r.label > 0).sum() * 1.0 - (c.label > 0).sum() * 0.25) <= 0.15 * (c.label > 0).sum() * 0.25
    assert resample_case(c, None) is c


def test_restored_probabilities_land_on_the_input_grid():
    c = _case()
    onehot = np.stack([c.label == k for k in range(3)]).astype(np.float32)
    r = resample_case(c, [1.0, 1.0, 1.0])
    coarse = np.stack([r.label == k for k in range(3)]).astype(np.float32)
    back = restore_probs(coarse, c.label.shape)
    assert back.shape == onehot.shape
    np.testing.assert_allclose(back.sum(0), 1.0, atol=1e-5)
    agree = (back.argmax(0) == c.label).mean()
    assert agree > 0.95


def test_axis_mismatch_is_an_error():
    with pytest.raises(ValueError, match="axes"):
        zoom_factors((1.0, 1.0), [1.0, 1.0, 1.0])


def test_a_run_with_target_spacing_predicts_on_the_input_grid(phantom3d, tmp_path):
    from noisyseg import api

    api.train(data=phantom3d, out=tmp_path / "run", method="supervised", progress=False, overrides={
        "data": {"patch_size": [16, 16, 16], "batch_size": 1, "target_spacing": [2.0, 2.0, 2.0]},
        "net": {"channels": [4, 8], "features": 4, "num_res_units": 0},
        "train": {"max_steps": 2, "val_every": 2}})
    ds = api.open_data(phantom3d)
    case = ds.test[0].load()
    written = api.predict(run=tmp_path / "run", images=phantom3d / "imagesTs", out=tmp_path / "pred", progress=False)
    from noisyseg.io import read_file

    pred = read_file(written[0])
    assert pred.array.shape == case.label.shape
    np.testing.assert_allclose(pred.spacing, case.spacing)
