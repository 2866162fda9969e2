"""Trained models the plugin can apply, save and load, and the per-viewer session that holds the current one.

A *predictor* wraps one kind of trained model behind the same small interface: ``class_names``,
``predict(stack)`` (a generator of :class:`Progress` records whose previews are CamMaps or label maps,
shown by :class:`~napari_pcam.gui.results.ResultTarget`) and ``save(path)``. ``LOADERS`` is the explicit
registry of kinds: a PCAM classifier checkpoint and a DeepLabv3+ checkpoint today; the pipeline's final
model bundle is one more entry.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Callable, Generator

from psygnal import Signal

from ..core.config import CamInferenceConfig
from ..core.data.images import ImageStack
from ..core.device import resolve_device
from ..core.errors import CheckpointError, DataError
from ..core.progress import Progress
from ..core.stages.cam import TrainedCam
from ..core.stages.cam_inference import compute_cams
from ..core.stages.segmentation import TrainedSegmenter, load_segmenter, save_segmenter


class PcamPredictor:
    """A trained PCAM classifier: per-class heatmaps and their argmax labels.

    Args:
        trained: The classifier.
        inference: Multi-scale inference settings and the background threshold of the labels.
        source: File it came from, if any.
    """

    kind = "pcam"

    def __init__(self, trained: TrainedCam, inference: CamInferenceConfig = CamInferenceConfig(), source=None):
        self.trained = trained
        self.inference = inference
        self.source = source

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.trained.class_names)

    @property
    def in_channels(self) -> int:
        return self.trained.model.backbone.in_channels

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "PcamPredictor":
        """Read a 'pcam' checkpoint onto ``device``."""
        trained = TrainedCam.load(path)
        trained.model.to(resolve_device(device)).eval()
        return cls(trained, source=Path(path))

    def predict(self, stack: ImageStack) -> Generator[Progress, None, None]:
        """Yields the CAMs (stage 'cams') then the labels (stage 'pcam labels') of every image."""
        _check_channels(self, stack)
        for i, img in enumerate(stack.images, start=1):
            cams = compute_cams(self.trained.model, img, self.inference)
            yield Progress("cams", i, len(stack), message=stack.names[i - 1], preview=cams)
            labels = cams.labels(self.inference.bg_threshold)
            yield Progress("pcam labels", i, len(stack), message=stack.names[i - 1], preview=labels)

    def save(self, path: str | Path) -> None:
        """Write the classifier as a 'pcam' checkpoint."""
        self.trained.save(path)


class SegmenterPredictor:
    """A trained DeepLabv3+: final label maps.

    Args:
        segmenter: The network with its config and classes.
        source: File it came from, if any.
    """

    kind = "deeplab"

    def __init__(self, segmenter: TrainedSegmenter, source=None):
        self.segmenter = segmenter
        self.source = source

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.segmenter.class_names)

    @property
    def in_channels(self) -> int:
        return self.segmenter.in_channels

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "SegmenterPredictor":
        """Read a 'deeplab' checkpoint onto ``device``."""
        return cls(load_segmenter(path, device=resolve_device(device)), source=Path(path))

    def predict(self, stack: ImageStack) -> Generator[Progress, None, None]:
        """Yields the label map (stage 'final') of every image."""
        _check_channels(self, stack)
        device = next(self.segmenter.model.parameters()).device
        for i, img in enumerate(stack.images, start=1):
            labels = self.segmenter.predict(img, device=device)
            yield Progress("final", i, len(stack), message=stack.names[i - 1], preview=labels)

    def save(self, path: str | Path) -> None:
        """Write the network as a 'deeplab' checkpoint."""
        save_segmenter(self.segmenter, path)


LOADERS: dict[str, Callable[..., object]] = {"pcam": PcamPredictor.load, "deeplab": SegmenterPredictor.load}


def load_model(path: str | Path, device: str = "auto"):
    """Load a model file of any registered kind.

    Raises:
        CheckpointError: the file is missing, corrupt, or of no registered kind.
    """
    errors = []
    for loader in LOADERS.values():
        try:
            return loader(path, device=device)
        except CheckpointError as exc:
            errors.append(exc)
    relevant = [e for e in errors if "holds a" not in str(e)]
    if relevant:
        raise relevant[0]
    raise CheckpointError(
        f"{str(path)!r} is not a model napari-pcam can apply (kinds: {', '.join(LOADERS)}); {errors[0]}"
    )


def check_classes(model, class_names) -> None:
    """Raise when the model's classes differ from ``class_names`` (the widget's classes)."""
    if tuple(model.class_names) != tuple(class_names):
        raise CheckpointError(
            f"the model was trained for classes {list(model.class_names)}, but the points layer declares "
            f"{list(class_names)}; load a model for these classes or change the classes."
        )


def _check_channels(model, stack: ImageStack) -> None:
    if model.in_channels != stack.channels:
        raise DataError(
            f"the model expects {model.in_channels}-channel images, the chosen image has {stack.channels} "
            "channel(s); pick an image like the training images (or set its channel axis)."
        )


class Session:
    """What the widgets of one viewer share: the current model (trained or loaded)."""

    model_changed = Signal(object)

    def __init__(self) -> None:
        self.model = None

    def set_model(self, model) -> None:
        """Make ``model`` the current model and tell the widgets."""
        self.model = model
        self.model_changed.emit(model)


_SESSIONS: "weakref.WeakKeyDictionary[object, Session]" = weakref.WeakKeyDictionary()


def session_for(viewer) -> Session:
    """The session of a viewer (created on first use, dropped with the viewer)."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]
