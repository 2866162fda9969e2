"""Confusion matrix, per-class IoU and mIoU with the ignore label 255 (as in PASCAL VOC)."""

from __future__ import annotations

import numpy as np

IGNORE = 255


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 (n, n) matrix, rows = ground truth, columns = prediction; gt == 255 is skipped.

    Raises:
        ValueError: shapes differ, or a value is outside 0..n-1 (other than the ignored 255).
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape.")
    valid = gt != IGNORE
    g, p = gt[valid].astype(np.int64), pred[valid].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"ground-truth values must lie in 0..{num_classes - 1} or be 255; found {g.min()}..{g.max()}.")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted values must lie in 0..{num_classes - 1}; found {p.min()}..{p.max()}.")
    return np.bincount(num_classes * g + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """float64 (n,) IoU = diag / (row + col - diag); NaN for classes absent from both."""
    conf = np.asarray(conf, dtype=np.float64)
    diag = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - diag
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, diag / np.where(union > 0, union, 1), np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean of the per-class IoU over classes that occur (nan-mean), in [0, 1]."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def evaluate(gts: list[np.ndarray], preds: list[np.ndarray], class_names: tuple[str, ...] | list[str]) -> dict:
    """Accumulate over images; returns ``{"miou": percent, "per_class": {name: percent}}``."""
    n = len(class_names)
    conf = np.zeros((n, n), np.int64)
    for g, p in zip(gts, preds):
        conf += confusion_matrix(g, p, n)
    return scores(conf, class_names)


def scores(conf: np.ndarray, class_names: tuple[str, ...] | list[str]) -> dict:
    """``{"miou": percent, "per_class": {name: percent or None}}`` of an accumulated confusion matrix."""
    iou = iou_per_class(conf)
    return {
        "miou": 100.0 * mean_iou(conf),
        "per_class": {name: (None if np.isnan(v) else 100.0 * float(v)) for name, v in zip(class_names, iou)},
    }
