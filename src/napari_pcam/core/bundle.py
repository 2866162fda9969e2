"""A trained model bundle: every network needed to segment new images, with config and class names.

Layout of a bundle folder::

    bundle.json   {format_version, napari_pcam_version, class_names, in_channels, config}
    deeplab.pt    the final DeepLabv3+ (inference needs only this network)
    pcam.pt       the PCAM classifier (CAM heatmaps of new images)
    irn.pt        IRNet (optional: refinement of new images' CAMs)

Each ``.pt`` is a checkpoint of :mod:`.checkpoints` (plain data, ``weights_only`` loading).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import PipelineConfig
from .errors import CheckpointError, DataError
from .io import atomic_write_text, place_file
from .stages.cam import TrainedCam
from .stages.segmentation import TrainedSegmenter, load_segmenter, save_segmenter

BUNDLE_VERSION = 1


@dataclass
class Bundle:
    """The loaded networks of a bundle."""

    segmenter: TrainedSegmenter
    pcam: TrainedCam | None
    class_names: tuple[str, ...]
    in_channels: int
    config: dict[str, Any]

    def predict(self, image: np.ndarray, *, device: str = "cpu", amp: bool = True) -> np.ndarray:
        """uint8 (H, W) class ids of one ``H x W x C`` image (DeepLabv3+, sliding window when large)."""
        return self.segmenter.predict(self._checked(image), device=device, amp=amp)

    def predict_many(self, images: Iterable[np.ndarray], *, device: str = "cpu", amp: bool = True,
                     crf_workers: int = 0) -> Iterator[np.ndarray]:
        """:meth:`predict` of every image, in order; with the CRF on, it runs in ``crf_workers`` processes."""
        checked = (self._checked(img) for img in images)
        return self.segmenter.predict_many(checked, device=device, amp=amp, crf_workers=crf_workers)

    def _checked(self, image: np.ndarray) -> np.ndarray:
        img = image[..., None] if image.ndim == 2 else image
        if img.ndim != 3 or img.shape[2] != self.in_channels:
            raise DataError(
                f"the model expects {self.in_channels}-channel images; this image has shape {image.shape}. "
                "Convert it to the channel layout the model was trained on."
            )
        return img


def save_bundle(
    path: str | Path, *, segmenter: TrainedSegmenter, pcam: TrainedCam | None, irn_path: Path | None,
    config: PipelineConfig, deeplab_path: Path | None = None, pcam_path: Path | None = None,
) -> None:
    """Write a bundle folder; each file is written atomically, ``bundle.json`` last.

    Args:
        path: The bundle folder.
        segmenter: The final network, with the inference settings the bundle applies.
        pcam: The PCAM classifier, if the bundle should carry it.
        irn_path: IRNet's checkpoint file, if any.
        config: The run's settings, stored in ``bundle.json``.
        deeplab_path: A checkpoint file that holds exactly ``segmenter`` (a run's ``models/deeplab.pt``),
            placed into the bundle instead of writing it again; likewise ``pcam_path`` for ``pcam``. Files
            are hard-linked where the file system allows (a run then stores each network once), else copied.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if deeplab_path is not None and Path(deeplab_path).is_file():
        place_file(deeplab_path, path / "deeplab.pt")
    else:
        save_segmenter(segmenter, path / "deeplab.pt")
    if pcam_path is not None and pcam is not None and Path(pcam_path).is_file():
        place_file(pcam_path, path / "pcam.pt")
    elif pcam is not None:
        pcam.save(path / "pcam.pt")
    if irn_path is not None and Path(irn_path).is_file():
        place_file(irn_path, path / "irn.pt")
    from .. import __version__

    meta = {
        "format_version": BUNDLE_VERSION,
        "napari_pcam_version": __version__,
        "class_names": list(segmenter.class_names),
        "in_channels": segmenter.in_channels,
        "config": config.to_dict(),
    }
    atomic_write_text(path / "bundle.json", json.dumps(meta, indent=2) + "\n")


def load_bundle(path: str | Path, *, class_names: Sequence[str] | None = None, device: str = "cpu") -> Bundle:
    """Read a bundle folder written by :func:`save_bundle`.

    Raises:
        CheckpointError: not a bundle, another bundle version, other classes, or a corrupt network file.
    """
    path = Path(path)
    meta_path = path / "bundle.json"
    if not meta_path.is_file():
        raise CheckpointError(
            f"{str(path)!r} is not a napari-pcam model bundle (no bundle.json); point to the 'model' folder of a run."
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{str(meta_path)!r} is corrupt: {exc}") from exc
    if meta.get("format_version") != BUNDLE_VERSION:
        raise CheckpointError(
            f"bundle {str(path)!r} has format version {meta.get('format_version')}, this napari-pcam reads version "
            f"{BUNDLE_VERSION}; retrain, or use napari-pcam {meta.get('napari_pcam_version', '?')}."
        )
    names = tuple(meta["class_names"])
    if class_names is not None and tuple(class_names) != names:
        raise CheckpointError(f"bundle {str(path)!r} segments classes {list(names)}, not {list(class_names)}.")
    segmenter = load_segmenter(path / "deeplab.pt", class_names=names, device=device)
    pcam = TrainedCam.load(path / "pcam.pt", names) if (path / "pcam.pt").is_file() else None
    return Bundle(segmenter, pcam, names, int(meta["in_channels"]), meta.get("config", {}))
