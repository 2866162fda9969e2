"""Fixtures of the GUI tests: tiny synthetic layers, captured notifications, fast training settings."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["OMP_NUM_THREADS"] = "1"
pytest.importorskip("napari")


@pytest.fixture
def notes():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    messages: list[str] = []

    def record(event):
        notification = getattr(event, "value", event)
        messages.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    yield messages
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture(scope="session")
def tiny():
    """Two seeded 64 px RGB images with masks and clicks (classes background, cell, fiber, crystal)."""
    from napari_pcam.core.data.synthetic import make_synthetic

    return make_synthetic(2, 64, seed=6)


@pytest.fixture
def tiny_layers(make_napari_viewer, tiny):
    """A viewer holding the tiny data as an RGB stack and a pcam Points layer."""
    from napari_pcam.gui.classes import CLASS_COLORS

    viewer = make_napari_viewer()
    image = viewer.add_image(np.stack(tiny.images.images), rgb=True, name="tiny", scale=(1, 0.5, 0.5))
    pts = np.column_stack([tiny.points.image, tiny.points.yx]) * [1, 0.5, 0.5]
    names = list(tiny.class_names)
    points = viewer.add_points(
        pts, name="tiny points", features={"class": [names[c] for c in tiny.points.cls]},
        metadata={"class_names": names, "class_colors": list(CLASS_COLORS[: len(names)])},
    )
    return viewer, image, points


@pytest.fixture
def make_bundle(tiny):
    """A function writing an untrained model bundle (resnet18, with a PCAM) for the given classes."""

    def make(path, class_names=None, crf=False):
        from napari_pcam.core.bundle import save_bundle
        from napari_pcam.core.config import CamConfig, DeepLabConfig, PipelineConfig
        from napari_pcam.core.models.cam import CamNet
        from napari_pcam.core.stages.cam import TrainedCam
        from napari_pcam.core.stages.segmentation import TrainedSegmenter, build_deeplab

        names = tuple(class_names or tiny.class_names)
        dl_config = DeepLabConfig(backbone="resnet18", weights="none", crf=crf)
        segmenter = TrainedSegmenter(build_deeplab(dl_config, num_classes=len(names), in_channels=3).eval(),
                                     dl_config, names, 3)
        cam = CamNet(backbone="resnet18", weights="none", in_channels=3, num_classes=len(names) - 1).eval()
        pcam = TrainedCam(cam, CamConfig(backbone="resnet18", weights="none"), names)
        save_bundle(path, segmenter=segmenter, pcam=pcam, irn_path=None, config=PipelineConfig())
        return path

    return make


@pytest.fixture
def fast():
    """A function that puts tiny CPU settings on a training widget."""
    return _fast_settings


def _fast_settings(widget) -> None:
    """Tiny CPU settings on a training widget (resnet18, no weights, one epoch of 64 px crops per stage)."""
    widget.preset.value = "sample"
    widget.weights.value = "none"
    widget.main["choices.encoder"].value = "resnet18"
    widget.main["runtime.device"].value = "cpu"
    widget.main["cam.epochs"].value = 1
    widget.advanced["cam.crop_size"].value = 64
    widget.advanced["cam.batch_size"].value = 2
    widget.main["irn.epochs"].value = 1
    widget.main["deeplab.epochs"].value = 1
    for stage in ("irn", "deeplab"):
        widget.advanced[f"{stage}.crop_size"].value = 64
        widget.advanced[f"{stage}.batch_size"].value = 2
    widget.advanced["runtime.amp"].value = False


@pytest.fixture
def wait_idle(qtbot):
    """A function that waits until a widget's worker has finished and its result layers are shown."""

    def wait(widget, timeout=90_000) -> None:
        qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)

    return wait
