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
