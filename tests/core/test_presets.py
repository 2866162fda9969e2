"""Named presets: the paper's defaults stay untouched; the sample preset's documented deviations."""

import warnings

import pytest

from napari_pcam.core import presets
from napari_pcam.core.config import PipelineConfig, to_dict
from napari_pcam.core.errors import ConfigError


def test_paper_preset_is_the_dataclass_defaults():
    cfg = presets.get_preset("paper")
    assert to_dict(cfg) == to_dict(PipelineConfig())
    assert cfg.cam.alpha == 0.1 and cfg.affinity.fg_threshold == 0.3 and cfg.affinity.bg_threshold == 0.05
    assert cfg.random_walk.bg_threshold == 0.3 and cfg.cam_inference.bg_threshold == 0.3 and cfg.random_walk.beta == 12


def test_sample_preset_uses_one_threshold_and_the_crf_when_installed(monkeypatch):
    import napari_pcam.core.stages.affinity as affinity

    monkeypatch.setattr(affinity, "crf_available", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = presets.sample_preset()
    t = presets.SAMPLE_THRESHOLD
    assert cfg.cam_inference.bg_threshold == cfg.affinity.fg_threshold == cfg.random_walk.bg_threshold == t
    assert cfg.affinity.crf and cfg.cam.alpha == 1.0 and not cfg.irn.freeze_backbone
    assert cfg.random_walk.beta == 12 and cfg.random_walk.exp_times == 8  # the paper's walk
    assert not cfg.deeplab.crf  # the paper's DeepLabv3+ predictions (docs/sample_crf.toml turns it on)


def test_the_documented_crf_config_is_the_sample_preset_with_deeplabs_crf(monkeypatch):
    import dataclasses
    from pathlib import Path

    import napari_pcam.core.stages.affinity as affinity

    monkeypatch.setattr(affinity, "crf_available", lambda: True)
    path = Path(__file__).parents[2] / "docs" / "sample_crf.toml"
    cfg = presets.sample_preset()
    expected = dataclasses.replace(cfg, deeplab=dataclasses.replace(cfg.deeplab, crf=True))
    assert to_dict(PipelineConfig.load(path)) == to_dict(expected)


def test_sample_preset_without_the_crf_package_warns_and_runs_without(monkeypatch):
    import napari_pcam.core.stages.affinity as affinity

    monkeypatch.setattr(affinity, "crf_available", lambda: False)
    with pytest.warns(UserWarning, match="napari-pcam\\[crf\\]"):
        cfg = presets.sample_preset()
    assert not cfg.affinity.crf


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="paper, sample, cpu, smoke"):
        presets.get_preset("fast")


def test_cpu_preset_is_pretrained_budgeted_in_steps_and_calibrated(monkeypatch):
    from napari_pcam.core.models.encoders import offline_encoders

    monkeypatch.setattr("napari_pcam.core.stages.affinity.crf_available", lambda: True)
    cfg = presets.get_preset("cpu")
    assert cfg.cam.backbone == cfg.irn.backbone == cfg.deeplab.backbone == presets.CPU_ENCODER
    assert presets.CPU_ENCODER in offline_encoders()  # its ImageNet weights install with the package
    assert cfg.cam.weights == cfg.deeplab.weights == "imagenet" and cfg.irn.weights == "same"
    assert min(cfg.cam.steps, cfg.irn.steps, cfg.deeplab.steps) > 0  # budgets in steps, not epochs
    assert cfg.calibration.enabled and cfg.cam.background_map
    assert cfg.affinity.crf and cfg.deeplab.crf  # the dense CRF in IRNet's mining and on the final labels
    assert cfg.deeplab.crf_check  # ... where the clicks keep it
    assert cfg.deeplab.crf_loss == 0  # measured: it helps point-only training, not the chain (see the docstring)
    assert cfg.deeplab.head_norm == "group"  # batches of 6 crops: BatchNorm's statistics would not carry over
    # the clicks override the pseudo labels and weigh 100 pseudo-labelled pixels each: measured, the clicks' own
    # batch average (weight 4, and 1) cost dubai, where a batch of crops holds a click or two, and without the
    # clicks' term the sample's grayscale and shapes-only variants lost a class
    assert cfg.deeplab.click_override and cfg.deeplab.click_norm == "labels"
    assert cfg.deeplab.click_weight == presets.CPU_CLICK_WEIGHT == 100
    assert (cfg.deeplab.train_on, cfg.deeplab.agree_with) == ("mined", "forest")
    # inference sees about the context of training: tiles of twice the crop (ASPP pools over the whole input)
    assert (cfg.deeplab.tile_size, cfg.deeplab.tile_overlap) == (2 * cfg.deeplab.crop_size, cfg.deeplab.crop_size // 2)
    paper = PipelineConfig()  # the paper's learning rates; alpha 1 (a short step budget, see the docstring)
    assert (cfg.cam.lr_backbone, cfg.cam.lr_classifier, cfg.cam.alpha) == (
        paper.cam.lr_backbone, paper.cam.lr_classifier, 1.0)
    assert (cfg.deeplab.lr, cfg.deeplab.weight_decay) == (paper.deeplab.lr, paper.deeplab.weight_decay)
    assert not PipelineConfig().calibration.enabled  # the paper preset keeps its fixed thresholds
    assert cfg == PipelineConfig.from_dict(cfg.to_dict())


def test_cpu_preset_without_the_crf_package_warns_once_and_runs_without(monkeypatch):
    monkeypatch.setattr("napari_pcam.core.stages.affinity.crf_available", lambda: False)
    with pytest.warns(UserWarning, match="napari-pcam\\[crf\\]") as record:
        cfg = presets.cpu_preset()
    assert len(record) == 1 and "final labels" in str(record[0].message)
    assert not cfg.affinity.crf and not cfg.deeplab.crf and not cfg.deeplab.crf_check
