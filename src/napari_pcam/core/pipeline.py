"""The only place that chains the stages: PCAM -> CAMs -> (IRNet -> refined labels -> DeepLabv3+).

:func:`run_pipeline` is a generator: it yields the :class:`Progress` of every stage and returns a
:class:`RunResult`. Every stage's output is cached in the run folder (see :mod:`.run_folder`), so an
interrupted run resumes where it stopped and a rerun with the same settings recomputes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Sequence

import numpy as np

from .config import PipelineConfig, to_dict
from .data.cams import CamMaps
from .data.images import ImageStack
from .data.points import PointAnnotations
from .errors import DataError
from .io import atomic_write_text, write_tiff
from .metrics import evaluate
from .progress import Progress
from .run_folder import RunFolder, fingerprint
from .stages.cam import TrainedCam, train_cam
from .stages.cam_inference import compute_cams

STAGES = ("pcam", "cams")


@dataclass
class RunData:
    """Everything a run reads: training images and points, optional masks and held-out images."""

    images: ImageStack
    points: PointAnnotations
    masks: Sequence[np.ndarray] | None = None
    val_images: ImageStack | None = None
    val_masks: Sequence[np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.points.validate(self.images.shapes, self.images.names)
        stems = [Path(n).stem for n in self.images.names]
        if len(set(stems)) != len(stems):
            raise DataError("two images share a file name stem (e.g. a.png and a.tif); rename one.")
        if self.masks is not None:
            _check_masks(self.images, self.masks, self.points.class_names, "training")
        if (self.val_images is None) != (self.val_masks is None) and self.val_images is not None:
            raise DataError("held-out images were given without masks: give --val-masks too (they are only used for evaluation).")
        if self.val_images is not None:
            if self.val_images.channels != self.images.channels:
                raise DataError(
                    f"held-out images have {self.val_images.channels} channels, training images {self.images.channels}."
                )
            _check_masks(self.val_images, self.val_masks, self.points.class_names, "held-out")

    def key(self) -> str:
        """Fingerprint of the training images and points."""
        return fingerprint(self.images.images, self.points.image, self.points.yx, self.points.cls,
                           list(self.points.class_names))


def _check_masks(images: ImageStack, masks, class_names, what: str) -> None:
    if len(masks) != len(images):
        raise DataError(f"{len(masks)} {what} masks for {len(images)} images.")
    n = len(class_names)
    for name, img, m in zip(images.names, images.images, masks):
        if m.shape != img.shape[:2]:
            raise DataError(f"{what} mask of {name!r} is {m.shape}, its image is {img.shape[:2]}.")
        bad = np.setdiff1d(np.unique(m), np.r_[np.arange(n), 255])
        if len(bad):
            raise DataError(
                f"{what} mask of {name!r} holds values {bad.tolist()[:5]} that are not declared classes "
                f"(0..{n - 1}: {', '.join(class_names)}; 255 = ignore)."
            )


@dataclass
class RunResult:
    """What a run produced: metrics (percent mIoU) and the folder."""

    folder: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    cams: list[CamMaps] | None = None
    pcam: TrainedCam | None = None


def image_keys(points: PointAnnotations, n_images: int, restrict: bool) -> list[np.ndarray | None]:
    """Class ids to compute CAMs for: the clicked classes of annotated images, all classes otherwise."""
    labels = points.image_labels(n_images)
    out: list[np.ndarray | None] = []
    for i in range(n_images):
        annotated = np.any(points.image == i)
        out.append(np.flatnonzero(labels[i]) + 1 if restrict and annotated else None)
    return out


def run_pipeline(
    data: RunData,
    config: PipelineConfig,
    out: str | Path,
    *,
    until: str = "pcam",
    force: bool = False,
) -> Generator[Progress, None, RunResult]:
    """Run the chain up to ``until`` into the folder ``out``; resumes from cached stages."""
    if until not in STAGES and until != "pcam":
        raise DataError(f"until={until!r} is not a stage; choose one of {', '.join(STAGES)}.")
    folder = RunFolder(out, force=force)
    config.save(folder.path("config.toml"))
    result = RunResult(folder.root)
    k_pcam = fingerprint(data.key(), to_dict(config.cam), config.runtime.seed,
                         fingerprint(list(data.masks)) if config.cam.point_mode == "all" else "")
    result.pcam = yield from _stage_pcam(data, config, folder, k_pcam)
    k_cams = fingerprint(k_pcam, to_dict(config.cam_inference))
    result.cams = yield from _stage_cams(data, config, folder, result.pcam, k_cams)
    if data.masks is not None:
        thr = config.cam_inference.bg_threshold
        scores = evaluate(list(data.masks), [c.labels(thr) for c in result.cams], data.points.class_names)
        _update_metrics(folder, result, "train", "pcam", scores)
    return result


def _stage_pcam(data: RunData, config: PipelineConfig, folder: RunFolder, key: str):
    path = folder.path("models", "pcam.pt")
    if folder.is_done("pcam", key) and path.is_file():
        yield Progress("pcam", 1, 1, message="cached")
        return TrainedCam.load(path, data.points.class_names)
    folder.forget("pcam")
    start = time.perf_counter()
    trained = yield from train_cam(data.images, data.points, config.cam, runtime=config.runtime, masks=data.masks)
    trained.save(path)
    folder.mark_done("pcam", key, time.perf_counter() - start)
    return trained


def _stage_cams(data: RunData, config: PipelineConfig, folder: RunFolder, trained: TrainedCam, key: str):
    stems = [Path(n).stem for n in data.images.names]
    paths = [folder.path("cams", f"{s}.npz") for s in stems]
    if folder.is_done("cams", key) and all(p.is_file() for p in paths):
        yield Progress("cams", len(paths), len(paths), message="cached")
        return [CamMaps.load(p) for p in paths]
    folder.forget("cams")
    start = time.perf_counter()
    device = next(trained.model.parameters()).device
    trained.model.to(device)
    keys = image_keys(data.points, len(data.images), config.cam_inference.restrict_to_labels)
    amp = config.runtime.amp
    cams = []
    for i, (img, stem) in enumerate(zip(data.images.images, stems)):
        c = compute_cams(trained.model, img, config.cam_inference, keys=keys[i], amp=amp)
        c.save(paths[i])
        write_tiff(folder.path("pcam", f"{stem}.tif"), c.dense(data.points.num_classes), axes="CYX")
        write_tiff(folder.path("pcam_labels", f"{stem}.tif"), c.labels(config.cam_inference.bg_threshold))
        cams.append(c)
        yield Progress("cams", i + 1, len(stems), message=data.images.names[i], preview=c)
    folder.mark_done("cams", key, time.perf_counter() - start)
    return cams


def _update_metrics(folder: RunFolder, result: RunResult, split: str, stage: str, scores: dict) -> None:
    path = folder.path("metrics.json")
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.setdefault(split, {})[stage] = round(scores["miou"], 2)
    metrics.setdefault("per_class", {}).setdefault(split, {})[stage] = {
        k: (None if v is None else round(v, 2)) for k, v in scores["per_class"].items()
    }
    metrics["seconds"] = folder.seconds()
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    result.metrics = metrics
