import dataclasses

import pytest

from napari_pcam.core.config import CamConfig, CamInferenceConfig, PipelineConfig, load_config
from napari_pcam.core.errors import ConfigError


def test_defaults_are_the_papers():
    cfg = PipelineConfig()
    assert cfg.cam.alpha == 0.1
    assert (cfg.cam.lr_backbone, cfg.cam.lr_classifier) == (0.001, 0.01)
    assert cfg.cam.backbone == "resnet50"
    assert cfg.cam_inference.scales == (1.0, 0.5, 1.5, 2.0) and cfg.cam_inference.flip
    assert cfg.random_walk.beta == 12 and cfg.random_walk.exp_times == 8
    assert cfg.affinity.fg_threshold == 0.3
    assert (cfg.deeplab.lr, cfg.deeplab.momentum, cfg.deeplab.weight_decay) == (0.007, 0.9, 4e-5)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_round_trip(tmp_path, suffix):
    cfg = dataclasses.replace(
        PipelineConfig(), cam=CamConfig(alpha=0.0, scale_range=(0.7, 1.3)),
        cam_inference=CamInferenceConfig(scales=(1.0, 2.0)),
    )
    path = tmp_path / f"c{suffix}"
    cfg.save(path)
    assert load_config(path) == cfg


def test_partial_file_keeps_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[cam]\nalpha = 0.5\n")
    cfg = load_config(path)
    assert cfg.cam.alpha == 0.5 and cfg.cam.backbone == "resnet50"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"alpha": -1}, "cam.alpha"),
        ({"crop_size": 100}, "multiple of 16"),
        ({"lr_backbone": 0}, "cam.lr_backbone"),
        ({"scale_range": (2.0, 1.0)}, "low <= high"),
        ({"alpha": 0.0, "background_map": True}, "cam.background_map = true needs cam.alpha > 0"),
    ],
)
def test_out_of_range_values_are_named(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        CamConfig(**kwargs)


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[cam]\nalfa = 0.5\n")
    with pytest.raises(ConfigError, match="cam.alfa.*alpha"):
        load_config(path)


def test_bad_toml_is_a_config_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[cam\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_deeplab_head_norm_defaults_to_the_papers_batchnorm_and_names_the_choices():
    from napari_pcam.core.config import DeepLabConfig

    assert DeepLabConfig().head_norm == "batch"
    with pytest.raises(ConfigError, match=r"deeplab\.head_norm='instance' is not valid; choose one of 'batch'"):
        DeepLabConfig(head_norm="instance")
