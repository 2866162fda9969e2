import numpy as np
import pytest

from napari_pcam.core.metrics import confusion_matrix, evaluate, iou_per_class, mean_iou


def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    expected = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 3), expected)


def test_iou_and_miou_by_hand():
    conf = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    # class 0: 1 / (2 + 1 - 1) = 0.5; class 1: 1 / (2 + 2 - 1) = 1/3; class 2: 1 / (1 + 2 - 1) = 0.5
    np.testing.assert_allclose(iou_per_class(conf), [0.5, 1 / 3, 0.5])
    assert mean_iou(conf) == pytest.approx((0.5 + 1 / 3 + 0.5) / 3)


def test_absent_class_is_nan_and_skipped():
    conf = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 0]])
    iou = iou_per_class(conf)
    assert np.isnan(iou[2]) and mean_iou(conf) == 1.0


def test_ignore_label_only_in_ground_truth():
    gt = np.full((2, 2), 255)
    assert confusion_matrix(gt, np.zeros((2, 2), int), 2).sum() == 0


def test_out_of_range_prediction_raises():
    with pytest.raises(ValueError, match="predicted values"):
        confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 5), 2)


def test_evaluate_percent_and_names():
    gt = [np.array([[0, 1], [1, 1]])]
    res = evaluate(gt, [gt[0].copy()], ("background", "cell"))
    assert res["miou"] == 100.0 and res["per_class"] == {"background": 100.0, "cell": 100.0}
