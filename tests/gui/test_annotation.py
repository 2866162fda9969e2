"""Annotation widget: classes, current class by widget and keyboard, colours, counts, stacks, CSV."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_pcam.gui.annotation import AnnotationWidget
from napari_pcam.gui.classes import rgba


def _widget(viewer):
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


@pytest.mark.gui
def test_points_carry_the_current_class_and_its_colour(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 50), np.uint8), name="img")
    widget = _widget(viewer)
    layer = widget.new_points_layer()
    widget.add_class("nucleus", "#ff00ff")
    layer.add([5, 6])
    widget.set_current_class("class_1")
    layer.add([7, 8])
    assert list(layer.features["class"]) == ["nucleus", "class_1"]
    np.testing.assert_allclose(layer.face_color[0], rgba("#ff00ff"))
    np.testing.assert_allclose(layer.face_color[1], rgba(widget.class_colors[1]))
    assert widget.counts() == {"background": 0, "class_1": 1, "nucleus": 1}
    assert "1 points" in widget.list.item(1).text()


@pytest.mark.gui
def test_number_keys_choose_the_class_and_move_selected_points(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((40, 50), np.uint8), name="img")
    widget = _widget(viewer)
    layer = widget.new_points_layer()
    widget.add_class("b")
    layer.add([[1, 1], [2, 2]])
    # The keys go to napari's main window (Qt's public QWidget.window() of the docked widget), which hands
    # them to the canvas's key bindings as when the user types with the window focused; no private napari API.
    window = widget.window()
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key_1)
    assert widget.current_class == "class_1"
    layer.mode = "select"
    layer.selected_data = {0}
    qtbot.keyClick(window, Qt.Key_0)
    assert list(layer.features["class"]) == ["background", "b"]
    np.testing.assert_allclose(layer.face_color[0], rgba(widget.class_colors[0]))


@pytest.mark.gui
def test_rename_recolour_and_guarded_remove(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 50), np.uint8), name="img")
    widget = _widget(viewer)
    layer = widget.new_points_layer()
    layer.add([3, 3])
    widget.rename_class("class_1", "cell")
    widget.set_class_color("cell", "#00ff00")
    assert list(layer.features["class"]) == ["cell"]
    assert layer.metadata["class_names"] == ["background", "cell"]
    np.testing.assert_allclose(layer.face_color[0], rgba("#00ff00"))
    widget._guard(lambda: widget.remove_class("cell"))
    assert any("still has 1 point" in n for n in notes)
    assert widget.class_names == ["background", "cell"] and len(layer.data) == 1
    widget.add_class("spare")
    widget.remove_class("spare")
    assert widget.class_names == ["background", "cell"]


@pytest.mark.gui
def test_stack_points_use_the_slice_as_leading_coordinate(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((3, 32, 32, 3), np.uint8), rgb=True, name="stack")
    widget = _widget(viewer)
    layer = widget.new_points_layer()
    assert layer.ndim == 3
    layer.add([2, 10, 12])
    widget.save_csv(tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text().splitlines()
    assert text == ["image,y,x,class", "slice_0002,10.00,12.00,class_1"]
    assert image.name == "stack"


@pytest.mark.gui
@pytest.mark.parametrize("fmt", ["pcam", "napari"])
def test_points_csv_round_trip(make_napari_viewer, tmp_path, fmt):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 30, 40), np.uint8), name="img")
    widget = _widget(viewer)
    layer = widget.new_points_layer()
    widget.add_class("cell")
    layer.add([[0, 4.5, 5], [1, 20, 30.25]])
    widget.set_current_class("class_1")
    layer.add([1, 7, 8])
    path = tmp_path / "points.csv"
    if fmt == "pcam":
        widget.save_csv(path)
    else:
        layer.save(str(path))  # napari's own Points CSV (index, axis-0.., features)
    loaded = widget.load_csv(path)
    assert loaded is not layer and widget.points.value is loaded
    np.testing.assert_allclose(loaded.data, layer.data, atol=0.01)
    assert list(loaded.features["class"]) == list(layer.features["class"])
    np.testing.assert_allclose(loaded.face_color, layer.face_color)
