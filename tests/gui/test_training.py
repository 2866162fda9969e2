"""Training through the widget: result layers, in-place updates, fine-tuning, cancel, closing the viewer."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_pcam.gui.classes import rgba
from napari_pcam.gui.models import PcamPredictor, session_for
from napari_pcam.gui.training import TrainingWidget


def _docked(viewer, image, points, fast):
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value, widget.points.value = image, points
    fast(widget)
    return widget


def _heatmaps(viewer):
    return [layer for layer in viewer.layers if layer.metadata.get("pcam_result", "").startswith("tiny|pcam ")]


@pytest.mark.gui
def test_train_adds_heatmaps_with_class_colours_then_updates_in_place(qtbot, tiny_layers, fast, wait_idle):
    viewer, image, points = tiny_layers
    widget = _docked(viewer, image, points, fast)
    qtbot.mouseClick(widget.train_button, Qt.LeftButton)
    wait_idle(widget)
    maps = _heatmaps(viewer)
    assert [m.name for m in maps] == ["tiny pcam cell", "tiny pcam fiber", "tiny pcam crystal"]
    for layer, color in zip(maps, points.metadata["class_colors"][1:]):
        assert layer.data.shape == (2, 64, 64)
        assert layer.blending == "additive"
        np.testing.assert_allclose(layer.colormap.colors[-1], rgba(color), atol=1e-6)
        np.testing.assert_allclose(layer.scale, image.scale)
        assert 0.0 <= layer.data.min() and layer.data.max() <= 1.0
    assert any(m.data.max() > 0 for m in maps)
    assert isinstance(session_for(viewer).model, PcamPredictor)
    assert widget.status.text().startswith("done")
    before = len(viewer.layers)
    points.add([0, 10, 10])  # one more click, then train again from the previous model
    widget.finetune.value = True
    widget.train()
    wait_idle(widget)
    assert len(viewer.layers) == before
    assert [m.name for m in _heatmaps(viewer)] == [m.name for m in maps]
    assert widget.status.text().startswith("done")


@pytest.mark.gui
def test_cancel_stops_soon_and_keeps_layers_usable(qtbot, tiny_layers, fast, wait_idle):
    viewer, image, points = tiny_layers
    widget = _docked(viewer, image, points, fast)
    widget.advanced["cam.min_steps"].value = 10_000
    widget.train()
    qtbot.waitUntil(lambda: "pcam: step 2/" in widget.status.text(), timeout=60_000)
    widget.cancel()
    wait_idle(widget, timeout=10_000)
    assert widget.status.text().startswith("cancelled")
    assert widget.train_button.isEnabled()
    assert len(points.data) == len(viewer.layers["tiny points"].data)


@pytest.mark.gui
def test_closing_the_viewer_stops_training(qtbot, tiny_layers, fast, wait_idle):
    viewer, image, points = tiny_layers
    widget = _docked(viewer, image, points, fast)
    widget.advanced["cam.min_steps"].value = 10_000
    widget.train()
    worker = widget.worker
    qtbot.waitUntil(lambda: "pcam: step" in widget.status.text(), timeout=60_000)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
