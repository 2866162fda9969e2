"""The Train widget's fields for threshold calibration, the learnt background map and step budgets."""

from __future__ import annotations

import pytest

from napari_pcam.gui.training import TrainingWidget


@pytest.mark.gui
def test_calibration_background_map_and_step_budgets_reach_the_config(make_napari_viewer):
    widget = TrainingWidget(make_napari_viewer())
    config = widget.config()
    assert not config.calibration.enabled and not config.cam.background_map  # the paper's settings
    widget.main["calibration.enabled"].value = True
    widget.main["cam.background_map"].value = True
    widget.advanced["cam.steps"].value = 40
    widget.advanced["deeplab.steps"].value = 60
    config = widget.config()
    assert config.calibration.enabled and config.cam.background_map
    assert (config.cam.steps, config.irn.steps, config.deeplab.steps) == (40, 0, 60)


@pytest.mark.gui
def test_the_cpu_preset_is_offered_and_sets_its_fields(make_napari_viewer):
    widget = TrainingWidget(make_napari_viewer())
    assert "cpu" in widget.preset.choices
    widget.preset.value = "cpu"
    config = widget.config()
    assert config.calibration.enabled and config.cam.background_map and config.cam.steps == 200
    assert config.deeplab.crf == config.affinity.crf  # both dense CRFs when pydensecrf2 is installed
    assert config.deeplab.crf_check == config.deeplab.crf  # and the clicks decide on the final one
    assert widget.advanced["deeplab.crf_check"].value is config.deeplab.crf_check
    assert widget.main["calibration.enabled"].value is True
