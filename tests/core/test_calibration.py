"""Thresholds chosen at held-out clicks (core/calibration.py)."""

import numpy as np
import pytest

from napari_pcam.core.calibration import (
    GRID,
    argmax_labels,
    balanced_accuracy,
    choose_background,
    choose_mining,
    samples_at,
    split_clicks,
)
from napari_pcam.core.config import CalibrationConfig
from napari_pcam.core.data.points import PointAnnotations
from napari_pcam.core.errors import ConfigError

NAMES = ("background", "a", "b")


def _points(rows):
    rows = np.asarray(rows, np.float64)
    return PointAnnotations(rows[:, 0], rows[:, 1:3], rows[:, 3], NAMES)


def _many_clicks(n_images=6, per_class=4):
    rows = []
    for i in range(n_images):
        for c in range(3):
            for j in range(per_class):
                rows.append((i, 2 + j, 2 + 3 * c, c))
    return _points(rows)


def test_split_is_stratified_disjoint_and_keeps_every_image_label():
    points = _many_clicks()
    split = split_clicks(points, CalibrationConfig(enabled=True, held_out=0.25, min_clicks=3), seed=0)
    assert split.usable and split.reason is None
    assert len(split.train) + len(split.held) == len(points)
    for c in range(3):  # 25% of each class's 24 clicks
        assert np.sum(split.held.cls == c) == 6
    n = 6
    np.testing.assert_array_equal(split.train.image_labels(n), points.image_labels(n))
    held = {(int(i), *map(float, yx), int(c)) for i, yx, c in zip(split.held.image, split.held.yx, split.held.cls)}
    train = {(int(i), *map(float, yx), int(c)) for i, yx, c in zip(split.train.image, split.train.yx, split.train.cls)}
    assert not held & train


def test_split_is_reproducible_by_seed():
    points = _many_clicks()
    cfg = CalibrationConfig(enabled=True, min_clicks=2)
    a, b, c = (split_clicks(points, cfg, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.held.yx, b.held.yx)
    assert not np.array_equal(a.held.yx, c.held.yx) or not np.array_equal(a.held.image, c.held.image)


def test_an_images_only_click_of_a_class_is_never_held_out():
    # one click of 'a' and of 'b' per image: none of them may leave training
    rows = [(i, 5, 5, 1) for i in range(10)] + [(i, 9, 9, 2) for i in range(10)]
    rows += [(i, 1, j, 0) for i in range(10) for j in range(3)]
    split = split_clicks(_points(rows), CalibrationConfig(enabled=True, min_clicks=2), seed=0)
    assert not split.usable
    assert "'a' (0 of 10 clicks)" in split.reason and "'b' (0 of 10 clicks)" in split.reason
    assert "calibration.min_clicks" in split.reason and "configured thresholds are used" in split.reason
    assert len(split.train) == len(rows) and len(split.held) == 0  # fallback: every click trains


def test_too_few_clicks_fall_back_with_the_reason():
    rows = [(0, 1, 1, 0), (0, 5, 5, 1), (0, 9, 9, 2)]  # one image, one click per class
    split = split_clicks(_points(rows), CalibrationConfig(enabled=True), seed=0)
    assert not split.usable and "too few clicks to calibrate" in split.reason


def test_samples_are_read_at_the_clicks_with_zeros_for_missing_classes():
    held = _points([(0, 1, 2, 1), (0, 3, 0, 0), (1, 0, 1, 2)])
    maps0 = np.zeros((1, 4, 4), np.float32)
    maps0[0, 1, 2], maps0[0, 3, 0] = 0.9, 0.2
    maps1 = np.zeros((2, 2, 3), np.float32)
    maps1[:, 0, 1] = (0.1, 0.7)
    scores, cls = samples_at([(np.array([1]), maps0), (np.array([1, 2]), maps1)], held)
    np.testing.assert_allclose(scores, [[0, 0.9, 0.0], [0, 0.2, 0.0], [0, 0.1, 0.7]])  # column 0: no bg map
    np.testing.assert_array_equal(cls, [1, 0, 2])


def test_a_learnt_background_map_is_column_zero_and_competes_in_the_argmax():
    held = _points([(0, 0, 0, 0), (0, 0, 1, 1)])
    maps = np.array([[[0.9, 0.2]], [[0.5, 0.6]]], np.float32)  # keys 0 (background map) and 1
    scores, cls = samples_at([(np.array([0, 1]), maps)], held)
    np.testing.assert_allclose(scores, [[0.9, 0.5, 0.0], [0.2, 0.6, 0.0]])
    # the plane alone (0.3) would call the first click 'a'; the background map wins there
    np.testing.assert_array_equal(argmax_labels(scores, 0.3), [0, 1])
    from napari_pcam.core.data.cams import cams_to_labels

    np.testing.assert_array_equal(cams_to_labels(maps, np.array([0, 1]), 0.3)[0], argmax_labels(scores, 0.3))


def test_argmax_ties_go_to_background_and_accuracy_is_class_balanced():
    scores = np.array([[0, 0.5, 0.1], [0, 0.2, 0.3]], np.float32)
    np.testing.assert_array_equal(argmax_labels(scores, 0.5), [0, 0])
    np.testing.assert_array_equal(argmax_labels(scores, 0.25), [1, 2])
    # 1 of 1 background right, 1 of 3 foreground 'a' right: (100 + 33.3) / 2
    assert balanced_accuracy(np.array([0, 1, 0, 0]), np.array([0, 1, 1, 1])) == pytest.approx(200 / 3)


def _separable(rng, n=200, fg_level=0.7, bg_level=0.2, spread=0.08):
    """Background clicks score about bg_level everywhere, class clicks about fg_level on their own map."""
    cls = rng.integers(0, 3, n)
    scores = np.clip(rng.normal(bg_level * 0.5, spread, (n, 2)), 0, 1)
    for c in (1, 2):
        scores[cls == c, c - 1] = np.clip(rng.normal(fg_level, spread, np.sum(cls == c)), 0, 1)
    scores[cls == 0] = np.clip(rng.normal(bg_level, spread, (np.sum(cls == 0), 2)), 0, 1)
    return np.concatenate([np.zeros((n, 1)), scores], axis=1).astype(np.float32), cls


def test_background_threshold_lands_between_the_two_populations():
    scores, cls = _separable(np.random.default_rng(0))
    choice = choose_background("cam_inference.bg_threshold", scores, cls, 0.3, tolerance=1.0)
    assert 0.35 <= choice.value <= 0.55  # between background (~0.2) and objects (~0.7)
    assert choice.score >= 95 and choice.score >= choice.configured_score
    assert set(choice.scan) == set(GRID)
    # wider maps (a from-scratch network's): the chosen threshold moves up with them
    wide, cls2 = _separable(np.random.default_rng(0), fg_level=0.9, bg_level=0.55)
    assert choose_background("x", wide, cls2, 0.3, tolerance=1.0).value > choice.value


def test_background_threshold_takes_the_middle_of_the_plateau():
    # every threshold in [0.2, 0.85) labels these clicks perfectly (ties go to background): grid values
    # 0.20 .. 0.80, whose middle is 0.5
    scores = np.array([[0, 0.2, 0.0], [0, 0.0, 0.2], [0, 0.85, 0.0], [0, 0.0, 0.85]], np.float32)
    choice = choose_background("x", scores, np.array([0, 0, 1, 2]), 0.3, tolerance=0.0)
    assert choice.value == pytest.approx(0.5)


def test_mining_thresholds_reach_the_precision_and_are_ordered():
    scores, cls = _separable(np.random.default_rng(1), spread=0.15)
    fg, bg = choose_mining(scores, cls, (0.3, 0.05), precision=0.9)
    assert fg.name == "affinity.fg_threshold" and bg.name == "affinity.bg_threshold"
    assert bg.value <= fg.value
    assert fg.score >= 90 and bg.score >= 90
    assert fg.coverage > 50 and bg.coverage > 10
    # a stricter precision never gives a more permissive foreground threshold
    fg99, _ = choose_mining(scores, cls, (0.3, 0.05), precision=0.99)
    assert fg99.value >= fg.value
    record = fg.record()
    assert set(record) == {"value", "configured", "score", "configured_score", "coverage"}


def test_mining_falls_back_to_the_most_precise_when_the_target_is_out_of_reach():
    rng = np.random.default_rng(2)
    cls = rng.integers(0, 3, 300)
    scores = rng.uniform(0, 1, (300, 3)).astype(np.float32)  # maps that know nothing
    scores[:, 0] = 0
    fg, bg = choose_mining(scores, cls, (0.3, 0.05), precision=0.99)
    assert fg.value in GRID and bg.value <= fg.value
    assert fg.score < 99  # reported honestly, not the target
    assert fg.score == max(v for v in fg.scan.values() if v is not None) or fg.coverage is not None


def test_calibration_settings_are_checked():
    with pytest.raises(ConfigError, match="calibration.held_out"):
        CalibrationConfig(held_out=0.8)
    with pytest.raises(ConfigError, match="calibration.precision"):
        CalibrationConfig(precision=0.0)
    with pytest.raises(ConfigError, match="calibration.enabled"):
        CalibrationConfig(enabled="yes")
