"""The npe2 manifest: every python_name imports, and the widgets dock from the Plugins menu."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

import napari_pcam

MANIFEST = Path(napari_pcam.__file__).parent / "napari.yaml"


@pytest.mark.gui
def test_every_python_name_imports():
    commands = yaml.safe_load(MANIFEST.read_text())["contributions"]["commands"]
    assert len(commands) >= 4
    for command in commands:
        module, attr = command["python_name"].split(":")
        assert callable(getattr(importlib.import_module(module), attr)), command["python_name"]


@pytest.mark.gui
@pytest.mark.parametrize("name", ["Annotate points", "Train", "Apply model"])
def test_widgets_dock(make_napari_viewer, name):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-pcam", name)
    assert dock.isVisible() or dock.widget() is not None
    assert type(widget).__module__.startswith("napari_pcam.gui")


@pytest.mark.gui
def test_sample_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-pcam", "sample")
    kinds = sorted(type(layer).__name__ for layer in viewer.layers)
    assert kinds == ["Image", "Labels", "Points"]
    points = viewer.layers["pcam points"]
    assert set(points.features["class"]) <= set(points.metadata["class_names"])
    assert all(tuple(layer.axis_labels) == ("slice", "y", "x") for layer in viewer.layers)
    assert tuple(viewer.dims.axis_labels) == ("slice", "y", "x")
