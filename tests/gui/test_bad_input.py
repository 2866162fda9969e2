"""Bad input gives a clear notification, starts nothing and leaves the user's layers untouched."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pcam.core.config import CamConfig
from napari_pcam.core.models.cam import CamNet
from napari_pcam.core.stages.cam import TrainedCam
from napari_pcam.gui.apply import ApplyWidget, _guard
from napari_pcam.gui.training import TrainingWidget


def _train_widget(viewer, image, points, fast):
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value, widget.points.value = image, points
    fast(widget)
    return widget


def _attempt(widget, points, notes) -> str:
    before = (points.data.copy(), list(points.features["class"]))
    widget.train()
    assert widget.worker is None, "nothing may start on bad input"
    np.testing.assert_array_equal(points.data, before[0])
    assert list(points.features["class"]) == before[1]
    assert notes, "a notification must explain the problem"
    return notes[-1]


@pytest.mark.gui
def test_no_points(tiny_layers, fast, notes):
    viewer, image, points = tiny_layers
    empty = viewer.add_points(ndim=3, name="empty", features={"class": np.array([], dtype=object)},
                              metadata=dict(points.metadata))
    widget = _train_widget(viewer, image, empty, fast)
    assert "has no points" in _attempt(widget, empty, notes)


@pytest.mark.gui
def test_class_without_points(tiny_layers, fast, notes):
    viewer, image, points = tiny_layers
    points.metadata["class_names"] = [*points.metadata["class_names"], "spore"]
    widget = _train_widget(viewer, image, points, fast)
    assert "'spore'" in _attempt(widget, points, notes) and "no points" in notes[-1]


@pytest.mark.gui
def test_points_of_another_image_shape(tiny_layers, fast, notes):
    viewer, image, points = tiny_layers
    flat = viewer.add_points(points.data[:, 1:], name="2d points", features=points.features,
                             metadata=dict(points.metadata))
    widget = _train_widget(viewer, image, flat, fast)
    assert "belongs to another image" in _attempt(widget, flat, notes)


@pytest.mark.gui
def test_points_outside_the_image(tiny_layers, fast, notes):
    viewer, image, points = tiny_layers
    points.add([0, 200, 5])
    widget = _train_widget(viewer, image, points, fast)
    assert "outside image" in _attempt(widget, points, notes)


@pytest.mark.gui
def test_labels_layer_as_image(tiny_layers, tiny, fast, notes):
    viewer, image, points = tiny_layers
    labels = viewer.add_labels(np.stack(tiny.masks), name="masks", scale=(1, 0.5, 0.5))
    widget = _train_widget(viewer, labels, points, fast)
    assert "is a Labels layer" in _attempt(widget, points, notes)
    assert labels.data.max() > 0 and len(viewer.layers) == 3


@pytest.mark.gui
def test_model_with_other_classes_is_refused(tiny_layers, tmp_path, notes):
    viewer, image, points = tiny_layers
    names = ("background", "cell", "other")
    model = CamNet(backbone="resnet18", weights="none", in_channels=3, num_classes=2)
    TrainedCam(model, CamConfig(backbone="resnet18", weights="none"), names).save(tmp_path / "m.pt")
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.classes_from.value = points
    _guard(lambda: widget.load(tmp_path / "m.pt"))
    assert "trained for classes" in notes[-1] and "'other'" in notes[-1]
    assert widget.session.model is None


@pytest.mark.gui
def test_bundle_with_other_classes_is_refused(tiny_layers, tmp_path, make_bundle, notes):
    viewer, image, points = tiny_layers
    make_bundle(tmp_path / "model", ("background", "cell", "other"))
    widget = ApplyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.classes_from.value = points
    _guard(lambda: widget.load(tmp_path / "model"))
    assert "trained for classes" in notes[-1] and "'other'" in notes[-1]
    assert widget.session.model is None
