"""Baselines on the same clicks: sparse click labels and the random-forest pixel classifier."""

import numpy as np
import pytest

from napari_pcam.core.baselines import points_to_sparse_labels, random_forest_baseline
from napari_pcam.core.data.points import PointAnnotations
from napari_pcam.core.data.synthetic import make_synthetic
from napari_pcam.core.errors import ConfigError, DataError


def _points():
    return PointAnnotations([0, 0, 1], [[2.4, 3.6], [9.0, 0.0], [5.0, 5.0]], [2, 0, 1], ("bg", "a", "b"))


def test_sparse_labels_are_ignore_except_at_clicks():
    labels = points_to_sparse_labels(_points(), [(10, 12), (8, 8)])
    assert [lab.shape for lab in labels] == [(10, 12), (8, 8)] and labels[0].dtype == np.uint8
    assert labels[0][2, 4] == 2 and labels[0][9, 0] == 0 and labels[1][5, 5] == 1
    assert np.count_nonzero(labels[0] != 255) == 2 and np.count_nonzero(labels[1] != 255) == 1


def test_sparse_label_discs_are_clipped_at_the_border():
    labels = points_to_sparse_labels(_points(), [(10, 12), (8, 8)], radius=1)
    assert np.count_nonzero(labels[1] == 1) == 5
    assert np.count_nonzero(labels[0] == 0) == 3  # the disc at (9, 0) loses its outside half


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(3, 40, seed=2), make_synthetic(2, (36, 44), seed=9)


def test_random_forest_gives_label_maps_of_the_right_shape_and_classes(tiny):
    train, other = tiny
    preds = random_forest_baseline(train.images, train.points, other.images, seed=0, n_estimators=10)
    assert [p.shape for p in preds] == [(36, 44)] * 2
    assert all(p.dtype == np.uint8 for p in preds)
    assert set(np.unique(np.concatenate([p.ravel() for p in preds]))) <= set(np.unique(train.points.cls))


def test_random_forest_reproduces_most_clicks_on_training_images(tiny):
    train, _ = tiny
    preds = random_forest_baseline(train.images, train.points, train.images, seed=0, n_estimators=10)
    yx = np.rint(train.points.yx).astype(int)
    hits = [preds[i][y, x] == c for i, (y, x), c in zip(train.points.image, yx, train.points.cls)]
    assert np.mean(hits) > 0.8


def test_random_forest_rejects_mismatched_channels(tiny):
    train, _ = tiny
    gray = make_synthetic(1, 32, seed=1, grayscale=True)
    with pytest.raises(DataError, match="channel"):
        random_forest_baseline(train.images, train.points, gray.images)


def _transitions(label: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(label, axis=0)) + np.count_nonzero(np.diff(label, axis=1)))


def test_random_forest_with_the_crf_keeps_the_clicks_and_gives_smoother_labels():
    pytest.importorskip("pydensecrf.densecrf")
    train = make_synthetic(3, 48, seed=4)
    rng = np.random.default_rng(0)
    noisy = [np.clip(img.astype(np.int16) + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)
             for img in train.images.images]
    stack = type(train.images)(noisy, train.images.names)
    plain = random_forest_baseline(stack, train.points, stack, seed=0, n_estimators=10)
    smooth = random_forest_baseline(stack, train.points, stack, seed=0, n_estimators=10, crf=True)
    assert [p.shape for p in smooth] == [p.shape for p in plain] and all(p.dtype == np.uint8 for p in smooth)
    assert set(np.unique(np.concatenate([p.ravel() for p in smooth]))) <= set(np.unique(train.points.cls))
    assert sum(map(_transitions, smooth)) < sum(map(_transitions, plain))
    yx = np.rint(train.points.yx).astype(int)
    hits = [smooth[i][y, x] == c for i, (y, x), c in zip(train.points.image, yx, train.points.cls)]
    assert np.mean(hits) > 0.7


def test_random_forest_crf_without_the_package_is_a_clear_error(tiny, monkeypatch):
    import sys

    train, other = tiny
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install pydensecrf2"):
        random_forest_baseline(train.images, train.points, other.images, crf=True)
