"""Named presets. The paper's settings are the dataclass defaults; ``sample`` is a light CPU preset.

``sample`` trains everything from scratch (no ImageNet download) with resnet18 at the built-in sample's
128 px size, so that ``napari-pcam run --sample`` finishes in a few minutes on two CPU cores. Learning
rates are higher than the paper's because the networks start from random weights (the paper fine-tunes
ImageNet weights): PCAM 0.01 / 0.1, DeepLabv3+ 0.05 with weight decay 5e-4 and small batches of small
crops (measured best on the sample); alpha, thresholds, beta and the multi-scale inference stay the paper's.

``smoke`` checks the machinery, not the method: resnet18 from random weights, 64 px crops, a few optimiser
steps per stage and single-scale CAM inference, so that ``napari-pcam benchmark voc --preset smoke`` runs
every table end to end on a small VOC-format tree in minutes on a CPU. Its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses

from .config import CamConfig, CamInferenceConfig, DeepLabConfig, IrnConfig, PipelineConfig
from .errors import ConfigError


def sample_preset() -> PipelineConfig:
    """Light settings for the built-in sample (resnet18, no pretrained weights, 128 px crops)."""
    cfg = PipelineConfig()
    return dataclasses.replace(
        cfg,
        cam=CamConfig(
            backbone="resnet18",
            weights="none",
            crop_size=128,
            batch_size=8,
            epochs=60,
            scale_range=(0.75, 1.25),
            lr_backbone=0.01,
            lr_classifier=0.1,
        ),
        irn=IrnConfig(
            backbone="resnet18",
            weights="same",
            crop_size=128,
            batch_size=8,
            epochs=10,
            scale_range=(0.75, 1.25),
        ),
        deeplab=DeepLabConfig(
            backbone="resnet18",
            weights="none",
            epochs=25,
            batch_size=4,
            crop_size=96,
            lr=0.05,
            scale_range=(0.75, 1.25),
            weight_decay=5e-4,
        ),
    )


def smoke_preset() -> PipelineConfig:
    """A few steps of every stage with resnet18 from scratch and 64 px crops: checks the machinery on a CPU."""
    cfg = PipelineConfig()
    return dataclasses.replace(
        cfg,
        cam=CamConfig(
            backbone="resnet18", weights="none", crop_size=64, batch_size=4, epochs=1, min_steps=3,
            scale_range=(0.9, 1.1), lr_backbone=0.01, lr_classifier=0.1,
        ),
        cam_inference=CamInferenceConfig(scales=(1.0,), flip=False),
        irn=IrnConfig(
            backbone="resnet18", weights="same", crop_size=64, batch_size=4, epochs=1, min_steps=3,
            scale_range=(0.9, 1.1),
        ),
        deeplab=DeepLabConfig(
            backbone="resnet18", weights="none", epochs=1, min_steps=3, batch_size=4, crop_size=64, lr=0.05,
            scale_range=(0.9, 1.1), weight_decay=5e-4,
        ),
    )


PRESETS = {"paper": PipelineConfig, "sample": sample_preset, "smoke": smoke_preset}


def get_preset(name: str) -> PipelineConfig:
    """Config of a named preset ('paper', 'sample' or 'smoke')."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]()
