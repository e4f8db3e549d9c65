"""Ignored (unannotated, -1) reference voxels take no part in Dice, IoU, HD95 or ASD."""

import numpy as np

from noisyseg.metrics.case_metrics import case_metrics
from noisyseg.metrics.overlap import dice_per_class


def test_prediction_inside_the_ignored_region_costs_nothing():
    truth = np.zeros((20, 20), np.int64)
    truth[4:8, 4:8] = 1
    truth[12:, :] = -1  # unannotated rows
    pred = np.zeros_like(truth)
    pred[4:8, 4:8] = 1
    pred[14:18, 2:6] = 1  # a blob where nobody annotated
    m = case_metrics(pred, truth, num_classes=2, spacing=1.0)
    assert m["dice_1"] == 1.0 and m["iou_1"] == 1.0 and m["hd95_1"] == 0.0 and m["asd_1"] == 0.0
    assert dice_per_class(pred, truth, 2)[1] == 1.0
    # the same blob in annotated background is a false positive
    truth_all = np.where(truth < 0, 0, truth)
    assert case_metrics(pred, truth_all, num_classes=2, spacing=1.0)["dice_1"] < 1.0


def test_evaluate_folders_leaves_the_ignore_value_out(tmp_path):
    from format_files import nifti

    from noisyseg.metrics import evaluate_folders

    truth = np.zeros((12, 12, 4), np.uint8)
    truth[2:6, 2:6] = 1
    truth[8:, :] = 2  # the ignore value
    pred = np.where(truth == 2, 1, truth).astype(np.uint8)  # foreground everywhere nobody annotated
    nifti(tmp_path / "t" / "c.nii.gz", truth)
    nifti(tmp_path / "p" / "c.nii.gz", pred)
    s = evaluate_folders(tmp_path / "p", tmp_path / "t", tmp_path / "e", label_values=[0, 1], ignore_value=2)
    assert s["metrics"]["dice_1"]["mean"] == 1.0 and s["metrics"]["hd95_1"]["mean"] == 0.0
    s2 = evaluate_folders(tmp_path / "p", tmp_path / "t", tmp_path / "e2", label_values=[0, 1, 2])
    assert s2["metrics"]["dice_1"]["mean"] < 1.0  # read as a class, the same voxels are errors
