import dataclasses

import pytest

from napari_pcam.core.choices import apply_choices, check_encoders
from napari_pcam.core.config import PipelineConfig
from napari_pcam.core.errors import ConfigError
from napari_pcam.core.pipeline import run_pipeline
from napari_pcam.core.presets import get_preset


def test_the_encoder_choice_sets_every_network():
    cfg = apply_choices(get_preset("sample"), encoder="efficientnet_lite0")
    assert {cfg.cam.backbone, cfg.irn.backbone, cfg.deeplab.backbone} == {"efficientnet_lite0"}
    check_encoders(cfg)  # IRNet's weights='same' fits


def test_weights_go_to_the_networks_that_load_their_own():
    cfg = apply_choices(PipelineConfig(), weights="none")
    assert (cfg.cam.weights, cfg.deeplab.weights, cfg.irn.weights) == ("none", "none", "same")
    cfg = dataclasses.replace(cfg, irn=dataclasses.replace(cfg.irn, weights="imagenet"))
    assert apply_choices(cfg, weights="none").irn.weights == "none"


def test_unset_choices_keep_the_config():
    cfg = get_preset("sample")
    assert apply_choices(cfg) == cfg


def test_unknown_encoder_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="efficientnet_lite0.*efficientnet_lite2"):
        apply_choices(PipelineConfig(), encoder="vgg16")


def test_pipeline_checks_every_encoder_before_any_stage(run_data, tiny_pipeline, tmp_path):
    bad = dataclasses.replace(tiny_pipeline, deeplab=dataclasses.replace(tiny_pipeline.deeplab, backbone="vgg16"))
    with pytest.raises(ConfigError, match="deeplab.backbone='vgg16'"):
        next(run_pipeline(run_data, bad, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_irn_reusing_the_pcam_encoder_needs_the_same_one(tiny_pipeline):
    bad = dataclasses.replace(tiny_pipeline, irn=dataclasses.replace(tiny_pipeline.irn, backbone="resnet34"))
    with pytest.raises(ConfigError, match="irn.weights='same' reuses the PCAM encoder"):
        check_encoders(bad)


def test_a_run_that_stops_early_checks_only_the_networks_it_builds(tiny_pipeline):
    bad = dataclasses.replace(tiny_pipeline, irn=dataclasses.replace(tiny_pipeline.irn, backbone="vgg16"))
    check_encoders(bad, ("cam",))
    with pytest.raises(ConfigError, match="irn.backbone='vgg16'"):
        check_encoders(bad, ("cam", "irn"))


def test_the_calibration_choice_switches_threshold_calibration():
    on = apply_choices(PipelineConfig(), calibrate=True)
    assert on.calibration.enabled and not PipelineConfig().calibration.enabled
    assert not apply_choices(on, calibrate=False).calibration.enabled
    assert apply_choices(on).calibration.enabled  # None keeps the config's
