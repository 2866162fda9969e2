"""Trained models the plugin can apply, save and load, and the per-viewer session that holds the current one.

A *predictor* wraps one kind of trained model behind the same small interface: ``class_names``,
``predict(stack)`` (a generator of :class:`Progress` records whose previews are CamMaps or label maps,
shown by :class:`~napari_pcam.gui.results.ResultTarget`) and ``save(path)``. ``LOADERS`` is the explicit
registry of checkpoint kinds (a PCAM classifier, a DeepLabv3+); the pipeline's model bundle (a folder with
``bundle.json``, see :mod:`napari_pcam.core.bundle`) is loaded by :class:`BundlePredictor`.
"""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path
from typing import Callable, Generator

import numpy as np
from psygnal import Signal

from ..core.bundle import Bundle, load_bundle
from ..core.config import CamInferenceConfig, PipelineConfig
from ..core.data.images import ImageStack
from ..core.device import resolve_device
from ..core.errors import CheckpointError, ConfigError, DataError
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

    def predict(self, stack: ImageStack, crf_workers: int = 0, heatmaps: bool = True
                ) -> Generator[Progress, None, None]:
        """Yields the CAMs (stage 'cams'; without a preview unless ``heatmaps``) then the labels (stage
        'pcam labels') of every image (no CRF, so ``crf_workers`` is unused)."""
        _check_channels(self, stack)
        for i, img in enumerate(stack.images, start=1):
            cams = compute_cams(self.trained.model, img, self.inference)
            yield Progress("cams", i, len(stack), message=stack.names[i - 1], preview=cams if heatmaps else None)
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

    def predict(self, stack: ImageStack, crf_workers: int = 0, heatmaps: bool = True
                ) -> Generator[Progress, None, None]:
        """Yields the label map (stage 'final') of every image; ``crf_workers`` as in
        :meth:`~napari_pcam.core.stages.segmentation.TrainedSegmenter.predict_many` (no heatmaps)."""
        _check_channels(self, stack)
        device = next(self.segmenter.model.parameters()).device
        labels = self.segmenter.predict_many(stack.images, device=device, crf_workers=crf_workers)
        for i, lab in enumerate(labels, start=1):
            yield Progress("final", i, len(stack), message=stack.names[i - 1], preview=lab)

    def save(self, path: str | Path) -> None:
        """Write the network as a 'deeplab' checkpoint."""
        save_segmenter(self.segmenter, path)


class BundlePredictor:
    """A model bundle (the ``model`` folder of a run): final labels and, if it holds a PCAM, heatmaps.

    Args:
        bundle: The loaded networks.
        source: The bundle folder.
    """

    kind = "bundle"

    def __init__(self, bundle: Bundle, source: Path):
        self.bundle = bundle
        self.source = Path(source)
        try:
            self.inference = PipelineConfig.from_dict(bundle.config).cam_inference
        except (ConfigError, TypeError, KeyError):
            self.inference = CamInferenceConfig()

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.bundle.class_names)

    @property
    def in_channels(self) -> int:
        return self.bundle.in_channels

    @property
    def pcam(self) -> TrainedCam | None:
        """The bundle's PCAM classifier (for heatmaps and fine-tuning), if it has one."""
        return self.bundle.pcam

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "BundlePredictor":
        """Read a bundle folder (or its ``bundle.json``) onto ``device``."""
        path = Path(path)
        folder = path.parent if path.name == "bundle.json" else path
        bundle = load_bundle(folder, device=str(resolve_device(device)))
        if bundle.pcam is not None:
            bundle.pcam.model.to(resolve_device(device)).eval()
        return cls(bundle, folder)

    @classmethod
    def from_result(cls, result, config: PipelineConfig) -> "BundlePredictor":
        """The bundle a finished pipeline run wrote to ``result.bundle_path``, from its in-memory networks."""
        seg = result.segmenter
        bundle = Bundle(seg, result.pcam, tuple(seg.class_names), seg.in_channels, config.to_dict())
        return cls(bundle, result.bundle_path)

    def predict(self, stack: ImageStack, crf_workers: int = 0, heatmaps: bool = True
                ) -> Generator[Progress, None, None]:
        """Yields the CAMs (stage 'cams', when the bundle has a PCAM and ``heatmaps``) and final labels
        (stage 'final'); ``crf_workers`` as in
        :meth:`~napari_pcam.core.stages.segmentation.TrainedSegmenter.predict_many`."""
        _check_channels(self, stack)
        device = next(self.bundle.segmenter.model.parameters()).device
        labels = self.bundle.predict_many(stack.images, device=device, crf_workers=crf_workers)
        for i, img in enumerate(stack.images, start=1):
            if self.pcam is not None and heatmaps:
                cams = compute_cams(self.pcam.model, img, self.inference)
                yield Progress("cams", i, len(stack), message=stack.names[i - 1], preview=cams)
            yield Progress("final", i, len(stack), message=stack.names[i - 1], preview=next(labels))

    def save(self, path: str | Path) -> None:
        """Copy the bundle folder to the folder ``path`` (created)."""
        path = Path(path)
        if path.resolve() == self.source.resolve():
            return
        if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / "bundle.json").is_file())):
            raise DataError(f"{str(path)!r} exists and is not an empty folder or a model bundle; choose a new folder.")
        if not (self.source / "bundle.json").is_file():
            raise CheckpointError(f"the bundle folder {str(self.source)!r} is gone; train again to save the model.")
        shutil.copytree(self.source, path, dirs_exist_ok=True)


LOADERS: dict[str, Callable[..., object]] = {"pcam": PcamPredictor.load, "deeplab": SegmenterPredictor.load}


def is_bundle_path(path: str | Path) -> bool:
    """True for a folder (a bundle) or a ``bundle.json`` file."""
    path = Path(path)
    return path.is_dir() or path.name == "bundle.json"


def load_model(path: str | Path, device: str = "auto"):
    """Load a model bundle folder or a checkpoint file of any registered kind.

    Raises:
        CheckpointError: the file is missing, corrupt, or of no registered kind.
    """
    if is_bundle_path(path):
        return BundlePredictor.load(path, device=device)
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


def _check_channels(model, stack: ImageStack, what: str = "the chosen image") -> None:
    if model.in_channels != stack.channels:
        raise DataError(
            f"the model expects {model.in_channels}-channel images, {what} has {stack.channels} "
            "channel(s); pick an image like the training images (or set its channel axis)."
        )


def check_channels(model, stack: ImageStack, what: str) -> None:
    """Raise a :class:`DataError` naming ``what`` when its channel count is not the model's."""
    _check_channels(model, stack, what)


def label_image(model, image, name: str = "image", crf_workers: int = 0):
    """uint8 (H, W) labels of one ``H x W x C`` image by any predictor (its last label map)."""
    labels = None
    for progress in model.predict(ImageStack([image], [name]), crf_workers=crf_workers, heatmaps=False):
        if isinstance(progress.preview, np.ndarray):
            labels = progress.preview
    return labels


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
