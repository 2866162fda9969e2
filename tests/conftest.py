"""Shared fixtures: tiny seeded synthetic data and a tiny CAM config."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_data():
    from napari_pcam.core.data.synthetic import make_synthetic

    return make_synthetic(4, 64, seed=3)


@pytest.fixture
def tiny_cam_config():
    from napari_pcam.core.config import CamConfig

    return CamConfig(backbone="resnet18", weights="none", crop_size=64, batch_size=2, epochs=1, scale_range=(0.9, 1.1))


@pytest.fixture(scope="session")
def tiny_pipeline():
    """Every stage with a tiny network and one epoch: the whole chain in seconds."""
    from napari_pcam.core.config import (
        CamConfig, CamInferenceConfig, DeepLabConfig, IrnConfig, PipelineConfig, RandomWalkConfig,
    )

    return PipelineConfig(
        cam=CamConfig(backbone="resnet18", weights="none", crop_size=64, batch_size=2, epochs=1),
        cam_inference=CamInferenceConfig(scales=(1.0,), flip=False),
        irn=IrnConfig(backbone="resnet18", weights="same", crop_size=64, batch_size=2, epochs=1, radius=5),
        random_walk=RandomWalkConfig(exp_times=3),
        deeplab=DeepLabConfig(backbone="resnet18", weights="none", crop_size=64, batch_size=2, epochs=1),
    )


@pytest.fixture(scope="session")
def run_data():
    """Three training images (all classes clicked) and two held-out images, with masks."""
    from napari_pcam.core.data.synthetic import make_synthetic
    from napari_pcam.core.pipeline import RunData

    train, val = make_synthetic(3, 64, seed=10), make_synthetic(2, 64, seed=12)
    return RunData(train.images, train.points, train.masks, val.images, val.masks)
