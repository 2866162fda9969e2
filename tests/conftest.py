"""Shared fixtures: tiny seeded synthetic data and a tiny CAM config."""

from __future__ import annotations

import contextlib
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

NOBODY = 65534


@contextlib.contextmanager
def _unprivileged():
    """Act as an ordinary user: root writes into read-only folders, so as root switch the effective uid."""
    if os.geteuid() != 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(NOBODY)  # else root's group bits (none) apply to root-owned folders instead of the others' bits
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only folder (mode 555) that an ordinary user can reach (as root: o+x on its parents meanwhile)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    changed = []
    if os.geteuid() == 0:
        for p in (tmp_path, *tmp_path.parents):
            mode = os.stat(p).st_mode
            if not mode & 0o001:
                os.chmod(p, mode | 0o001)
                changed.append((p, mode))
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)
    for p, mode in changed:
        os.chmod(p, mode)


@pytest.fixture
def unprivileged():
    """``with unprivileged(): ...`` acts as an ordinary user (see :func:`_unprivileged`)."""
    return _unprivileged


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
        CamConfig,
        CamInferenceConfig,
        DeepLabConfig,
        IrnConfig,
        PipelineConfig,
        RandomWalkConfig,
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
