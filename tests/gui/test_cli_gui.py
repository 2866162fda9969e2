"""``napari-pcam gui``: registered in the CLI, opens a viewer with the sample and the widgets docked."""

from __future__ import annotations

import pytest

from napari_pcam.cli import build_parser
from napari_pcam.cli import gui as cli_gui
from napari_pcam.gui.apply import ApplyWidget
from napari_pcam.gui.training import TrainingWidget


@pytest.mark.gui
def test_gui_command_is_registered():
    args = build_parser().parse_args(["gui", "--no-sample"])
    assert args.func is cli_gui.main and args.no_sample


@pytest.mark.gui
def test_open_viewer_docks_the_widgets_with_the_sample(qtbot):
    viewer = cli_gui.open_viewer(sample=True, show=False)
    try:
        docked = list(viewer.window.dock_widgets.values())
        assert any(isinstance(w, TrainingWidget) for w in docked)
        assert any(isinstance(w, ApplyWidget) for w in docked)
        assert len([name for name in viewer.window.dock_widgets if "napari-pcam" in name]) == 3
        train = next(w for w in docked if isinstance(w, TrainingWidget))
        assert train.image.value is viewer.layers["pcam sample"]
        assert train.points.value is viewer.layers["pcam points"]
        assert train.preset.value == "sample"
    finally:
        viewer.close()
