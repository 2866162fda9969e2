"""Result layers on a timer: added and painted in ticks of their own, refreshed when their slice is on screen."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QWidget

from napari_pcam.core.data.cams import CamMaps
from napari_pcam.gui.results import Redrawer, ResultTarget, tool_overlays

NAMES = ["background", "cell", "fiber"]
COLORS = ["#000000", "#ff0000", "#00ff00"]
KINDS = ["pcam cell", "pcam fiber", "refined"]


def _setup(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((2, 16, 16, 3), np.uint8), rgb=True, name="img", scale=(1, 0.5, 0.5))
    widget = QWidget()
    viewer.window.add_dock_widget(widget)
    return viewer, image, widget


def _results(viewer):
    return [layer for layer in viewer.layers if "pcam_result" in layer.metadata]


def _started(redraw: Redrawer, target: ResultTarget, then=None) -> Redrawer:
    """Start the redrawer, then stop its timer: the test calls its ticks itself."""
    redraw.start(target, then=then)
    redraw.timer.stop()
    return redraw


def _cams(value: float) -> CamMaps:
    maps = np.full((2, 16, 16), value, np.float32)
    return CamMaps(np.array([1, 2]), maps, maps[:, ::4, ::4])


@pytest.mark.gui
def test_layers_are_added_one_per_tick_with_the_window_painted_at_the_next(make_napari_viewer):
    viewer, image, widget = _setup(make_napari_viewer)
    window = widget.window()
    started = []
    target = ResultTarget(viewer, image, NAMES, COLORS)
    target.prepare(KINDS)
    redraw = _started(Redrawer(widget), target, then=lambda: started.append(True))
    assert _results(viewer) == [], "nothing is added in the caller's turn (the click)"
    for count in range(1, len(KINDS) + 1):
        redraw._tick()  # adds one layer, painting held back
        assert len(_results(viewer)) == count
        assert not window.updatesEnabled()
        assert not started and redraw.busy
        redraw._tick()  # lets the window paint; adds nothing
        assert len(_results(viewer)) == count
        assert window.updatesEnabled()
        if KINDS[count - 1] == "refined":  # a Labels layer: its editing tools are built at ticks of their own
            tools = tool_overlays(_results(viewer)[-1])
            assert len(tools) == 2
            assert not any(tool.visible for tool in tools), "the add itself builds no tool visuals"
            for restored in (1, 2):
                assert not started and redraw.busy
                redraw._tick()
                assert sum(tool.visible for tool in tools) == restored
                assert len(_results(viewer)) == count and window.updatesEnabled()
    assert started == [True], "the worker starts once every layer is made and painted"
    for layer, kind in zip(_results(viewer), KINDS):
        assert layer.name == f"img {kind}"
        assert layer.visible, "drawn empty (shaders compiled) before the worker starts, not mid-training"
        np.testing.assert_allclose(layer.scale, image.scale[:3])
    assert _results(viewer)[0].blending == "additive"


@pytest.mark.gui
def test_results_update_the_prepared_layers_in_place_and_a_later_run_reuses_them(make_napari_viewer):
    viewer, image, widget = _setup(make_napari_viewer)
    target = ResultTarget(viewer, image, NAMES, COLORS)
    target.prepare(KINDS)
    redraw = _started(Redrawer(widget), target, then=lambda: None)
    while redraw._then is not None:
        redraw._tick()
    layers = _results(viewer)
    data = [id(layer.data) for layer in layers]
    target.show_cams(_cams(0.5), 0)
    redraw._tick()
    assert not target.pending and len(_results(viewer)) == len(KINDS)
    assert layers[1].data[0].max() == pytest.approx(0.5)
    assert [id(layer.data) for layer in layers] == data

    # A later run on the same image reuses the layers; one the user hid stays hidden.
    layers[0].visible = False
    again = ResultTarget(viewer, image, NAMES, COLORS)
    again.prepare(KINDS)
    _started(redraw, again)
    redraw._tick()
    assert len(_results(viewer)) == len(KINDS)
    again.show_cams(_cams(1.0), 1)
    again.show_labels("refined", np.ones((16, 16), np.uint8), 1)
    for _ in range(2):
        redraw._tick()
    assert [layer.visible for layer in layers] == [False, True, True]
    assert layers[0].data[1].max() == pytest.approx(1.0) and layers[2].data[1].max() == 1
    assert [id(layer.data) for layer in layers] == data


@pytest.mark.gui
def test_results_written_before_their_layer_exists_are_added_visible(make_napari_viewer):
    viewer, image, widget = _setup(make_napari_viewer)
    target = ResultTarget(viewer, image, NAMES, COLORS)
    redraw = _started(Redrawer(widget), target)
    target.show_labels("final", np.full((16, 16), 2, np.uint8), 0)
    redraw._tick()
    assert not widget.window().updatesEnabled()
    redraw.finish()
    redraw._tick()
    assert widget.window().updatesEnabled()
    redraw._tick()  # the Labels layer's two editing tools, one per tick
    assert redraw.busy
    redraw._tick()
    assert not redraw.busy
    (layer,) = _results(viewer)
    assert len(tool_overlays(layer)) == 2 and all(tool.visible for tool in tool_overlays(layer))
    assert layer.visible and layer.data[0].max() == 2


@pytest.mark.gui
def test_garbage_collection_is_paused_while_a_run_is_shown(make_napari_viewer):
    import gc

    viewer, image, widget = _setup(make_napari_viewer)
    assert gc.get_freeze_count() == 0
    target = ResultTarget(viewer, image, NAMES, COLORS)
    redraw = _started(Redrawer(widget), target)
    assert gc.get_freeze_count() > 0, "the objects of the viewer are left out of full collections"
    redraw.finish()
    for _ in range(3):
        redraw._tick()
    assert not redraw.busy and gc.get_freeze_count() == 0, "handed back once everything is shown"


@pytest.mark.gui
def test_garbage_collection_resumes_when_the_widget_closes_mid_run(make_napari_viewer, qtbot):
    import gc

    viewer, image, widget = _setup(make_napari_viewer)
    redraw = _started(Redrawer(widget), ResultTarget(viewer, image, NAMES, COLORS))
    assert gc.get_freeze_count() > 0 and redraw.busy
    widget.deleteLater()
    qtbot.waitUntil(lambda: gc.get_freeze_count() == 0, timeout=2000)


@pytest.mark.gui
def test_results_for_slices_not_on_screen_need_no_refresh(make_napari_viewer, monkeypatch):
    viewer, image, widget = _setup(make_napari_viewer)
    target = ResultTarget(viewer, image, NAMES, COLORS)
    redraw = _started(Redrawer(widget), target)
    target.show_cams(_cams(0.5), 0)
    while redraw.busy:  # both heatmaps added and painted, one per tick
        redraw.finish()
        redraw._tick()
    layers = _results(viewer)
    refreshed = []
    for layer in layers:
        monkeypatch.setattr(layer, "refresh", lambda layer=layer: refreshed.append(layer.name))
    assert viewer.dims.current_step[0] == 0
    target.show_cams(_cams(0.7), 1)  # slice 1 is not on screen
    target.flush()
    assert refreshed == [] and not target.pending
    assert layers[0].data[1].max() == pytest.approx(0.7)
    monkeypatch.undo()
    viewer.dims.set_current_step(0, 1)  # napari reads slice 1 from the data when the user moves there
    assert layers[0]._slice.image.raw.max() == pytest.approx(0.7)
    for layer in layers:
        monkeypatch.setattr(layer, "refresh", lambda layer=layer: refreshed.append(layer.name))
    target.show_cams(_cams(0.9), 1)  # on screen now
    target.show_cams(_cams(0.2), 0)
    target.flush()
    assert refreshed == ["img pcam cell", "img pcam fiber"]
    viewer.dims.ndisplay = 3  # a 3D view draws every slice
    refreshed.clear()
    target.show_cams(_cams(0.3), 0)
    target.flush()
    assert refreshed == ["img pcam cell", "img pcam fiber"]


@pytest.mark.gui
def test_the_one_private_napari_attribute_still_holds_the_labels_editing_tools(make_napari_viewer):
    """tool_overlays reads napari's private ``Labels._overlays``: this fails when napari changes it."""
    from napari.components.overlays import LabelsPolygonOverlay
    from napari.components.overlays.labels_brush_stroke import LabelsBrushStrokeOverlay
    from napari.layers import Labels

    layer = Labels(np.zeros((8, 8), np.uint8))
    polygon, brush = tool_overlays(layer)
    assert isinstance(polygon, LabelsPolygonOverlay) and isinstance(brush, LabelsBrushStrokeOverlay)
    assert polygon.visible and brush.visible, "napari builds their visuals only once they are visible"
    viewer = make_napari_viewer()
    viewer.add_layer(layer)
    polygon.visible = False  # switching one off and on again works on a layer in the viewer
    polygon.visible = True
