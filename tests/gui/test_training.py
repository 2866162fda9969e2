"""Training through the widget: result layers of every stage, in-place updates, fine-tuning, cancel, closing."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_pcam.core.pipeline import STAGES
from napari_pcam.gui.classes import rgba
from napari_pcam.gui.jobs import FINETUNE_DIR
from napari_pcam.gui.models import BundlePredictor, session_for
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
def test_run_until_offers_every_stage_and_defaults_to_final(make_napari_viewer):
    widget = TrainingWidget(make_napari_viewer())
    assert tuple(widget.until.choices) == STAGES
    assert widget.until.value == "final"


@pytest.mark.gui
def test_the_viewer_runs_the_crf_in_a_worker_process_by_default(make_napari_viewer):
    widget = TrainingWidget(make_napari_viewer())
    assert widget.config().runtime.crf_workers == 1
    widget.preset.value = "sample"
    assert widget.config().runtime.crf_workers == 1
    widget.advanced["runtime.crf_workers"].value = 0  # the user's choice wins
    assert widget.config().runtime.crf_workers == 0


@pytest.mark.gui
def test_both_dense_crfs_are_advanced_settings_that_follow_the_preset(make_napari_viewer):
    from napari_pcam.core.crf import crf_available

    widget = TrainingWidget(make_napari_viewer())
    assert not widget.config().affinity.crf and not widget.config().deeplab.crf  # the paper's settings
    widget.preset.value = "sample"
    on = crf_available()  # the sample preset mines IRNet's labels with it when pydensecrf2 is installed
    assert widget.config().affinity.crf is on and not widget.config().deeplab.crf
    widget.advanced["deeplab.crf"].value = True
    widget.advanced["affinity.crf"].value = False
    assert widget.config().deeplab.crf and not widget.config().affinity.crf


@pytest.mark.gui
def test_train_until_final_adds_every_result_layer_then_finetunes_in_place(qtbot, tiny_layers, fast, wait_idle):
    viewer, image, points = tiny_layers
    widget = _docked(viewer, image, points, fast)
    selected = viewer.layers.selection.active
    qtbot.mouseClick(widget.train_button, Qt.LeftButton)
    wait_idle(widget)
    assert widget.status.text().startswith("done"), widget.status.text()
    maps = _heatmaps(viewer)
    assert [m.name for m in maps] == ["tiny pcam cell", "tiny pcam fiber", "tiny pcam crystal"]
    for layer, color in zip(maps, points.metadata["class_colors"][1:]):
        assert layer.data.shape == (2, 64, 64)
        assert layer.visible
        assert layer.blending == "additive"
        np.testing.assert_allclose(layer.colormap.colors[-1], rgba(color), atol=1e-6)
        np.testing.assert_allclose(layer.scale, image.scale)
        assert 0.0 <= layer.data.min() and layer.data.max() <= 1.0
    assert any(m.data.max() > 0 for m in maps)
    for stage in ("refined", "final"):
        labels = viewer.layers[f"tiny {stage}"]
        assert labels.visible
        assert labels.data.shape == (2, 64, 64) and labels.data.dtype == np.uint8
        assert set(np.unique(labels.data)) <= {0, 1, 2, 3}
        np.testing.assert_allclose(labels.scale, image.scale)
        np.testing.assert_allclose(labels.colormap.map(np.array([2]))[0], rgba(points.metadata["class_colors"][2]),
                                   atol=1e-3)
    assert viewer.layers.selection.active is selected, "result layers must not take the selection"
    model = session_for(viewer).model
    assert isinstance(model, BundlePredictor) and model.pcam is not None
    assert (model.source / "bundle.json").is_file()
    before, data_ids = len(viewer.layers), [id(m.data) for m in maps]
    points.add([0, 10, 10])  # one more click, then train again from the previous model
    widget.finetune.value = True
    widget.until.value = "cams"
    widget.train()
    wait_idle(widget)
    assert widget.status.text().startswith("done"), widget.status.text()
    assert FINETUNE_DIR in widget.status.text()
    assert len(viewer.layers) == before
    assert [id(m.data) for m in _heatmaps(viewer)] == data_ids, "layers are updated in place"


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


def _activity_bar(job):
    """The activity dock's bar (napari's QtLabeledProgressBar) that shows this job's napari progress."""
    from qtpy.QtWidgets import QApplication

    bars = [w for w in QApplication.allWidgets()
            if type(w).__name__ == "QtLabeledProgressBar" and getattr(w, "progress", None) is job.activity.bar]
    return bars[0] if bars else None


@pytest.mark.gui
def test_training_shows_in_the_activity_dock_whose_cancel_stops_it(qtbot, tiny_layers, fast, wait_idle):
    viewer, image, points = tiny_layers
    widget = _docked(viewer, image, points, fast)
    widget.advanced["cam.min_steps"].value = 10_000
    widget.train()
    qtbot.waitUntil(lambda: "pcam: step 3/" in widget.status.text(), timeout=60_000)
    activity = widget.activity
    assert activity.bar.desc.startswith("train tiny: pcam") and activity.bar.total >= 10_000
    assert activity.bar.n >= 2
    dock_bar = _activity_bar(widget)
    assert dock_bar is not None and not dock_bar.cancel_button.isHidden(), "a cancelable bar has Cancel"
    assert dock_bar.qt_progress_bar.value() >= 2, "the dock shows the steps done"
    qtbot.mouseClick(dock_bar.cancel_button, Qt.LeftButton)
    wait_idle(widget, timeout=10_000)
    assert widget.status.text().startswith("cancelled"), widget.status.text()
    assert activity.closed and widget.activity is None
    assert widget.train_button.isEnabled()


@pytest.mark.gui
def test_result_layers_carry_the_images_axis_labels_and_units(tiny_layers):
    from napari_pcam.gui.results import ResultTarget

    viewer, image, points = tiny_layers
    image.axis_labels = ("slice", "row", "column")
    image.units = ("", "µm", "µm")
    target = ResultTarget(viewer, image, points.metadata["class_names"], points.metadata["class_colors"])
    target.show_labels("final", np.zeros((64, 64), np.uint8), 1)
    layer = target.layer("final")
    assert tuple(layer.axis_labels) == ("slice", "row", "column")
    assert [str(u) for u in layer.units] == [str(u) for u in image.units]
    assert tuple(viewer.dims.axis_labels) == ("slice", "row", "column")
