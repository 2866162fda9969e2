"""The only place that chains the stages: PCAM -> CAMs -> IRNet -> refined labels -> DeepLabv3+ -> final labels.

:func:`run_pipeline` is a generator: it yields the :class:`Progress` of every stage and returns a
:class:`RunResult`. Every stage's output is cached in the run folder (see :mod:`.run_folder`), so an
interrupted run resumes where it stopped and a rerun with the same settings recomputes nothing.

Under ``torchrun`` every rank runs this same function: the training stages use DistributedDataParallel,
the per-image stages take every N-th image and read the others' results from the folder, and only rank 0
writes shared files (see :mod:`.distributed`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from operator import methodcaller
from pathlib import Path
from typing import Any, Callable, Generator, Sequence

import numpy as np
import torch

from . import distributed
from .calibration import CalibrationWarning, ClickSplit, choose_background, choose_mining, samples_at, split_clicks
from .choices import check_encoders
from .click_scores import choose_crf, click_map, click_scores, painted, stage_warnings
from .config import PipelineConfig, to_dict
from .data.cams import CamMaps
from .data.images import ImageStack
from .data.lazy import LazySequence, take
from .data.points import PointAnnotations
from .device import resolve_device
from .distributed import evaluate
from .errors import ConfigError, DataError
from .io import atomic_write, atomic_write_text, write_tiff
from .progress import Progress
from .run_folder import RunFolder, fingerprint
from .stages.affinity import mine_all
from .stages.cam import TrainedCam, train_cam
from .stages.cam_inference import compute_cams
from .stages.irn import TrainedIrn, load_irn, train_irn
from .stages.random_walk import normalised_scores, scores_to_labels
from .stages.refine import refine_images, walk_images
from .stages.segmentation import TrainedSegmenter, load_segmenter, save_segmenter, train_deeplab
from .stages.segmentation_inference import predict_many_with_and_without_crf

STAGES = ("pcam", "cams", "irn", "refined", "deeplab", "final")


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
            raise DataError("held-out images were given without masks: give --val-masks too "
                            "(they are only used for evaluation).")
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
    for name, shape, m in zip(images.names, images.shapes, masks):  # shapes: no image is decoded
        if m.shape != tuple(shape):
            raise DataError(f"{what} mask of {name!r} is {m.shape}, its image is {tuple(shape)}.")
        bad = np.setdiff1d(np.unique(m), np.r_[np.arange(n), 255])
        if len(bad):
            raise DataError(
                f"{what} mask of {name!r} holds values {bad.tolist()[:5]} that are not declared classes "
                f"(0..{n - 1}: {', '.join(class_names)}; 255 = ignore)."
            )


@dataclass
class RunResult:
    """What a run produced: metrics (percent mIoU) and the folder.

    CAMs and label images are sequences read from the run folder on access (one image at a time).
    """

    folder: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    cams: Sequence[CamMaps] | None = None
    pcam: TrainedCam | None = None
    irn: TrainedIrn | None = None
    refined: Sequence[np.ndarray] | None = None
    segmenter: TrainedSegmenter | None = None
    final: Sequence[np.ndarray] | None = None
    val_cams: Sequence[CamMaps] | None = None
    val_refined: Sequence[np.ndarray] | None = None
    val_final: Sequence[np.ndarray] | None = None

    @property
    def bundle_path(self) -> Path:
        """Folder of the trained model bundle (exists after the 'final' stage)."""
        return self.folder / "model"


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
    until: str = "final",
    force: bool = False,
    init: TrainedCam | None = None,
    held_out_rows: bool = True,
    held_out_labels: Sequence[np.ndarray] | None = None,
) -> Generator[Progress, None, RunResult]:
    """Run the chain up to ``until`` into the folder ``out``; resumes from cached stages.

    Args:
        data: Images, points and optional masks / held-out images.
        config: All stage settings.
        out: Run folder (created; see :class:`~.run_folder.RunFolder` for what may be overwritten).
        until: Last stage: one of :data:`STAGES`.
        force: Recompute stages whose cached results were made with other data or settings.
        init: Fine-tune this PCAM model instead of training one from the configured weights.
        held_out_rows: With held-out images, also score their PCAM and refined labels (``val_cams``,
            ``val_refined``; CAMs restricted to each image's classes, as the paper's val rows use the
            image-level labels).
        held_out_labels: Those classes (int64 class ids per held-out image, read on access); default: the
            classes present in each held-out mask. The VOC benchmark gives VOC's XML labels, as IRNet.
    """
    if until not in STAGES:
        raise DataError(f"until={until!r} is not a stage; choose one of {', '.join(STAGES)}.")
    last = STAGES.index(until)
    check_encoders(config, ("cam",) + (("irn",) if last >= STAGES.index("irn") else ())
                   + (("deeplab",) if last >= STAGES.index("deeplab") else ()))
    folder = RunFolder(out, force=force)
    if distributed.is_main():
        config.save(folder.path("config.toml"))
    result = RunResult(folder.root)
    names = data.points.class_names
    split = yield from _split_clicks(data, config, folder, result)
    k = fingerprint(data.key(), to_dict(config.cam), config.runtime.seed,
                    fingerprint(data.masks) if config.cam.point_mode == "all" else "",
                    "init" if init is None else fingerprint(init.model.state_dict()["classifier.weight"].numpy()),
                    "" if split is None else fingerprint(split.held.image, split.held.yx, split.held.cls))
    result.pcam = yield from _stage_pcam(data, config, folder, k, init, data.points if split is None else split.train)
    k = fingerprint(k, to_dict(config.cam_inference))
    result.cams = yield from _stage_cams(data, config, folder, result.pcam, k, write_labels=split is None)
    if split is not None:  # the CAM background and IRNet's mining thresholds, from the held-out clicks
        config = _calibrate_cams(data, config, folder, result, split)
    thr = config.cam_inference.bg_threshold
    pcam_labels = LazySequence(result.cams, methodcaller("labels", thr))  # picklable, for loader workers
    yield from _check_clicks(folder, result, data.points, "pcam", pcam_labels)
    if data.masks is not None:
        _update_metrics(folder, result, "train", "pcam", evaluate(data.masks, pcam_labels, names))
    k_val = None
    if held_out_rows and data.val_images is not None:
        k_val = fingerprint(k, data.val_images.images, data.val_masks,
                            "" if held_out_labels is None else held_out_labels)
    if k_val is not None:  # held-out PCAM and refined rows, as the paper's val rows (image-level labels known)
        result.val_cams = yield from _stage_val_cams(data, config, folder, result.pcam, k_val, held_out_labels)
        _update_metrics(folder, result, "val", "pcam",
                        evaluate(data.val_masks, LazySequence(result.val_cams, lambda c: c.labels(thr)), names))
    if last < STAGES.index("irn"):
        return result
    k = fingerprint(k, to_dict(config.irn), to_dict(config.affinity))
    result.irn = yield from _stage_irn(data, config, folder, result, k)
    if last < STAGES.index("refined"):
        return result
    if split is not None and not config.random_walk.instances:  # the walk's background, from the held-out clicks
        walk = yield from _stage_walk(data, config, folder, result, fingerprint(k, to_dict(config.random_walk)))
        config = _calibrate_walk(data, config, folder, result, split, walk)
    k = fingerprint(k, to_dict(config.random_walk))

    def refiner(images: ImageStack, cams: Sequence[CamMaps]):
        return lambda idx: refine_images(images.subset(idx), take(cams, idx), result.irn, config.random_walk,
                                         device=config.runtime.device)

    if split is not None and not config.random_walk.instances:
        make = partial(_walk_labels, data.images, result.cams, walk, config.random_walk.bg_threshold)
    else:
        make = refiner(data.images, result.cams)
    result.refined = yield from _stage_labels("refined", make, data.images, folder, k)
    if not config.random_walk.instances:
        yield from _check_clicks(folder, result, data.points, "refined", result.refined)
    if data.masks is not None and not config.random_walk.instances:
        _update_metrics(folder, result, "train", "refined", evaluate(data.masks, result.refined, names))
    if k_val is not None and not config.random_walk.instances:
        result.val_refined = yield from _stage_labels("val_refined", refiner(data.val_images, result.val_cams),
                                                      data.val_images, folder, fingerprint(k, k_val))
        _update_metrics(folder, result, "val", "refined", evaluate(data.val_masks, result.val_refined, names))
    if last < STAGES.index("deeplab"):
        return result
    deeplab = to_dict(config.deeplab)
    source = _deeplab_labels(config, folder, result, split)
    if source == "mined":  # written once to mined/ (mining an image per crop would slow every step)
        mine = partial(_mine_images, data.images, result.cams, config.affinity, config.runtime.crf_workers)
        labels = yield from _stage_labels("mined", mine, data.images, folder, fingerprint(k, to_dict(config.affinity)))
    else:
        labels = pcam_labels if source == "pcam" else result.refined
    if config.deeplab.agree_with == "forest":  # pseudo labels only where the clicks' forest agrees
        forest = yield from _stage_forest(data, config, folder, result)
        labels = LazySequence(range(len(labels)), partial(agreeing, labels, forest))
    k = fingerprint(k, {f: v for f, v in deeplab.items() if f not in DEEPLAB_INFERENCE}, source)
    segmenter = yield from _stage_deeplab(data, config, folder, result, k, labels)
    # inference settings (tiling, test-time scales / flip) change the predictions, not the trained network
    result.segmenter = dataclasses.replace(segmenter, config=dataclasses.replace(
        segmenter.config, **{f: getattr(config.deeplab, f) for f in DEEPLAB_INFERENCE}))
    if last < STAGES.index("final"):
        return result
    # models/deeplab.pt holds the network with the inference settings it was trained with: the bundle
    # can share that file only if they are still the ones asked for
    same = result.segmenter.config == segmenter.config
    yield from _stage_final(data, config, folder, result, fingerprint(k, {f: deeplab[f] for f in DEEPLAB_INFERENCE}),
                            deeplab_file=folder.path("models", "deeplab.pt") if same else None)
    return result


def _split_clicks(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult):
    """The held-out clicks of calibration (None when it is off, or cannot run: then a warning says why)."""
    if not config.calibration.enabled:
        return None
    split = split_clicks(data.points, config.calibration, config.runtime.seed)
    record = {"held_out_clicks": len(split.held), "training_clicks": len(split.train)}
    if not split.usable:
        record["fallback"] = split.reason
    _record_calibration(folder, result, record)
    if not split.usable:
        warnings.warn(split.reason, CalibrationWarning, stacklevel=3)
        yield Progress("check", 1, 1, message=split.reason)
        return None
    return split


def _record_calibration(folder: RunFolder, result: RunResult, entries: dict) -> None:
    """Add to the calibration record of ``run.json`` and ``metrics.json`` (chosen values and click scores)."""
    result.metrics.setdefault("calibration", {}).update(entries)
    folder.manifest["calibration"] = result.metrics["calibration"]
    folder.save_manifest()
    _write_metrics(folder, result)


def _calibrate_cams(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult,
                    split: ClickSplit) -> PipelineConfig:
    """Choose the CAM background and IRNet's mining thresholds at the held-out clicks; write ``pcam_labels/``."""
    cal = config.calibration
    scores, cls = samples_at(((c.keys, c.highres) if len(split.held.for_image(i)[1]) else None
                              for i, c in enumerate(result.cams)), split.held)
    cam = choose_background("cam_inference.bg_threshold", scores, cls, config.cam_inference.bg_threshold,
                            tolerance=cal.tolerance)
    fg, bg = choose_mining(scores, cls, (config.affinity.fg_threshold, config.affinity.bg_threshold),
                           precision=cal.precision)
    _record_calibration(folder, result, {c.name: c.record() for c in (cam, fg, bg)})
    config = dataclasses.replace(
        config, cam_inference=dataclasses.replace(config.cam_inference, bg_threshold=cam.value),
        affinity=dataclasses.replace(config.affinity, fg_threshold=fg.value, bg_threshold=bg.value))
    stems = [Path(n).stem for n in data.images.names]
    for i in distributed.shard(len(stems)):
        write_tiff(folder.path("pcam_labels", f"{stems[i]}.tif"), result.cams[i].labels(cam.value))
    return config


def _stage_walk(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult, key: str):
    """The random walk's scores of the training images (``walk/<stem>.npy``, stride 4), cached on rerun."""
    paths = [folder.path("walk", f"{Path(n).stem}.npy") for n in data.images.names]
    if folder.is_done("walk", key) and all(p.is_file() for p in paths):
        yield Progress("walk", len(paths), len(paths), message="cached")
        return LazySequence(paths, np.load)
    folder.forget("walk")
    start = time.perf_counter()

    def make(idx):
        return walk_images(data.images.subset(idx), take(result.cams, idx), result.irn, config.random_walk,
                           device=config.runtime.device)

    scores = yield from run_sharded(make, len(paths), "walk")
    for path, s in zip(paths, scores):
        if s is not None:
            atomic_write(path, partial(_save_npy, s))
    distributed.barrier()
    folder.mark_done("walk", key, time.perf_counter() - start)
    return LazySequence(paths, np.load)


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _calibrate_walk(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult,
                    split: ClickSplit, walk: Sequence[np.ndarray]) -> PipelineConfig:
    """Choose the random walk's background threshold at the held-out clicks."""
    shapes = data.images.shapes
    scores, cls = samples_at(((result.cams[i].keys, normalised_scores(torch.from_numpy(walk[i]), shapes[i][:2]))
                              if len(split.held.for_image(i)[1]) else None for i in range(len(walk))), split.held)
    rw = choose_background("random_walk.bg_threshold", scores, cls, config.random_walk.bg_threshold,
                           tolerance=config.calibration.tolerance)
    _record_calibration(folder, result, {rw.name: rw.record()})
    return dataclasses.replace(config, random_walk=dataclasses.replace(config.random_walk, bg_threshold=rw.value))


def _walk_labels(images: ImageStack, cams: Sequence[CamMaps], walk: Sequence[np.ndarray], threshold: float,
                 idx: Sequence[int]):
    """Refined labels of the images ``idx`` from their stored random-walk scores at ``threshold``."""
    out = []
    for j, i in enumerate(idx):
        lab = scores_to_labels(torch.from_numpy(walk[i]), cams[i].keys, images.shapes[i][:2], threshold)
        out.append(lab)
        yield Progress("refine", j + 1, len(idx), message=images.names[i], preview=lab)
    return out


def _stage_pcam(data: RunData, config: PipelineConfig, folder: RunFolder, key: str, init: TrainedCam | None,
                points: PointAnnotations):
    path = folder.path("models", "pcam.pt")
    if folder.is_done("pcam", key) and path.is_file():
        yield Progress("pcam", 1, 1, message="cached")
        return TrainedCam.load(path, data.points.class_names)
    folder.forget("pcam")
    start = time.perf_counter()
    trained = yield from train_cam(data.images, points, config.cam, runtime=config.runtime, masks=data.masks,
                                   init=init)
    if distributed.is_main():
        trained.save(path)
    folder.mark_done("pcam", key, time.perf_counter() - start)
    return trained


def _stage_cams(data: RunData, config: PipelineConfig, folder: RunFolder, trained: TrainedCam, key: str,
                write_labels: bool = True):
    """CAMs of the training images (``cams/``), with ``pcam/`` maps and ``pcam_labels/`` TIFFs and previews
    (the labels later, at the calibrated threshold, when ``write_labels`` is False)."""
    keys_of = partial(image_keys, data.points, len(data.images), config.cam_inference.restrict_to_labels)
    return (yield from _cam_files("cams", data.images, keys_of, config, folder, trained, key,
                                  num_classes=data.points.num_classes, write_labels=write_labels))


def val_keys(masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Classes present in each held-out mask: the image-level labels that the held-out CAMs are restricted to."""
    return [np.setdiff1d(np.unique(np.asarray(m)), [0, 255]).astype(np.int64) for m in masks]


def _stage_val_cams(data: RunData, config: PipelineConfig, folder: RunFolder, trained: TrainedCam, key: str,
                    labels: Sequence[np.ndarray] | None):
    """CAMs of the held-out images for their evaluation rows (``val_cams/<stem>.npz``), restricted to their
    image-level labels (``labels``, or the classes of their masks) as the paper's and IRNet's val rows."""
    keys_of = partial(val_keys, data.val_masks) if labels is None else lambda: labels
    return (yield from _cam_files("val_cams", data.val_images, keys_of, config, folder, trained, key))


def _cam_files(stage: str, images: ImageStack, keys_of: Callable[[], list], config: PipelineConfig,
               folder: RunFolder, trained: TrainedCam, key: str, num_classes: int | None = None,
               write_labels: bool = True):
    """CAMs of every image into ``<stage>/<stem>.npz`` (this rank's share), cached on rerun.

    ``keys_of()`` gives each image's classes (None = all), called only when the CAMs are computed. With
    ``num_classes`` (the training images) the dense maps and argmax labels are also written as TIFFs
    (``pcam/``, ``pcam_labels/``) and the CAMs are previews of the progress records.
    """
    stems = [Path(n).stem for n in images.names]
    paths = [folder.path(stage, f"{s}.npz") for s in stems]
    if folder.is_done(stage, key) and all(p.is_file() for p in paths):
        yield Progress(stage, len(paths), len(paths), message="cached")
        return LazySequence(paths, CamMaps.load)
    folder.forget(stage)
    start = time.perf_counter()
    trained.model.to(resolve_device(config.runtime.device))  # a cached PCAM is loaded on the CPU
    keys = keys_of()
    amp = config.runtime.amp
    mine = distributed.shard(len(stems))  # every image in a single process
    for j, i in enumerate(mine):
        c = compute_cams(trained.model, images.images[i], config.cam_inference, keys=keys[i], amp=amp)
        c.save(paths[i])
        if num_classes is not None:
            write_tiff(folder.path("pcam", f"{stems[i]}.tif"), c.dense(num_classes), axes="CYX")
            if write_labels:
                write_tiff(folder.path("pcam_labels", f"{stems[i]}.tif"), c.labels(config.cam_inference.bg_threshold))
        yield Progress(stage, j + 1, len(mine), message=images.names[i], preview=c if num_classes is not None else None)
    distributed.barrier()  # every rank's CAMs are on disk
    folder.mark_done(stage, key, time.perf_counter() - start)
    return LazySequence(paths, CamMaps.load)  # read one at a time: VOC's CAMs do not fit in memory


def _stage_irn(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult, key: str):
    path = folder.path("models", "irn.pt")
    if folder.is_done("irn", key) and path.is_file():
        yield Progress("irn", 1, 1, message="cached")
        return load_irn(path)
    folder.forget("irn")
    start = time.perf_counter()
    init_state = None
    if config.irn.weights == "same":  # check_encoders made sure the encoders agree
        init_state = result.pcam.model.backbone.state_dict()
    trained = yield from train_irn(data.images, result.cams, config.irn, config.affinity,
                                   device=config.runtime.device, seed=config.runtime.seed,
                                   init_backbone_state=init_state,
                                   num_workers=config.runtime.num_workers,
                                   crf_workers=config.runtime.crf_workers, amp=config.runtime.amp)
    if distributed.is_main():
        trained.save(path)
    folder.mark_done("irn", key, time.perf_counter() - start)
    return trained


def read_tiff(path) -> np.ndarray:
    """One label image written by a stage."""
    import tifffile

    return tifffile.imread(path)


def run_sharded(make_gen, n: int, stage: str | None = None) -> Generator[Progress, None, list]:
    """Run ``make_gen(indices)`` on this rank's share of ``n`` items (all of them in a single process).

    ``make_gen`` returns a generator of :class:`Progress` that returns one result per index. Its records
    are passed on (renamed to ``stage`` if given); returns ``n`` results, None for the other ranks' items.
    """
    mine = distributed.shard(n)
    out: list = [None] * n
    if not mine:
        return out
    gen = make_gen(mine)
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            results = stop.value
            break
        yield p if stage is None else dataclasses.replace(p, stage=stage)
    for i, r in zip(mine, results):
        out[i] = r
    return out


# DeepLabConfig fields used only at inference: a change re-runs the predictions, not the training
DEEPLAB_INFERENCE = ("tile_size", "tile_overlap", "batch_tiles", "test_scales", "test_flip", "crf", "crf_check")


def _stage_labels(stage: str, make_gen, images: ImageStack, folder: RunFolder, key: str, sub: str | None = None):
    """Run ``make_gen(indices)`` (a per-image label generator) on this rank's images, writing
    ``<sub>/<stem>.tif`` atomically; returns every image's labels; cached on rerun."""
    sub = sub or stage
    paths = [folder.path(sub, f"{Path(n).stem}.tif") for n in images.names]
    if folder.is_done(stage, key) and all(p.is_file() for p in paths):
        yield Progress(stage, len(paths), len(paths), message="cached")
        return LazySequence(paths, read_tiff)
    folder.forget(stage)
    start = time.perf_counter()
    labels = yield from run_sharded(make_gen, len(paths), stage)
    for path, lab in zip(paths, labels):
        if lab is not None:  # this rank's image
            write_tiff(path, lab)
    distributed.barrier()  # every rank's labels are on disk
    folder.mark_done(stage, key, time.perf_counter() - start)
    return LazySequence(paths, read_tiff)  # read on access, from whichever rank wrote them


def _mine_images(images: ImageStack, cams: Sequence[CamMaps], affinity, workers: int, idx: Sequence[int]):
    """Confident PCAM labels of the images ``idx`` as IRNet mines them (255 where not confident), with
    IRNet's CRF in ``workers`` processes (``runtime.crf_workers``); an image is read only for the CRF."""
    items = ((cams[i], images.images[i] if affinity.crf else None) for i in idx)
    out = []
    for j, (i, lab) in enumerate(zip(idx, mine_all(items, affinity, workers=workers))):
        out.append(lab)
        yield Progress("mined", j + 1, len(idx), message=images.names[i], preview=lab)
    return out


def _deeplab_labels(config: PipelineConfig, folder: RunFolder, result: RunResult, split: ClickSplit | None) -> str:
    """Which pseudo labels DeepLabv3+ learns from, 'refined', 'pcam' or 'mined' (``deeplab.train_on``); 'best'
    compares the refined and PCAM scores at the held-out clicks of calibration and records the choice beside
    the thresholds."""
    wanted = config.deeplab.train_on
    if wanted != "best":
        return wanted
    record = result.metrics.get("calibration", {})
    pcam, refined = record.get("cam_inference.bg_threshold"), record.get("random_walk.bg_threshold")
    if split is None or pcam is None or refined is None:
        warnings.warn("deeplab.train_on='best' compares PCAM and refined labels at held-out clicks, and this run "
                      "has none (calibration off or too few clicks, or instance mode): DeepLabv3+ learns from "
                      "the refined labels.", CalibrationWarning, stacklevel=3)
        return "refined"
    chosen = "pcam" if pcam["score"] > refined["score"] + config.calibration.tolerance else "refined"
    _record_calibration(folder, result, {"deeplab.train_on": {
        "value": chosen, "configured": wanted, "pcam_score": pcam["score"], "refined_score": refined["score"]}})
    return chosen


def _stage_forest(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult):
    """The training images labelled by a random forest on all the clicks (``deeplab.agree_with = "forest"``),
    written to ``forest/``; scored at the clicks and, with masks, in ``metrics.json``'s "forest" rows."""
    from .baselines import random_forest_steps

    def make(idx: Sequence[int]):
        return random_forest_steps(data.images, data.points, data.images.subset(idx), seed=config.runtime.seed)

    key = fingerprint(data.key(), config.runtime.seed, "forest")
    forest = yield from _stage_labels("forest", make, data.images, folder, key)
    result.metrics.setdefault("clicks", {})["forest"] = click_scores(forest, data.points)
    if data.masks is not None:
        _update_metrics(folder, result, "train", "forest", evaluate(data.masks, forest, data.points.class_names))
    else:
        _write_metrics(folder, result)
    return forest


def agreeing(labels: Sequence[np.ndarray], other: Sequence[np.ndarray], i: int) -> np.ndarray:
    """Image ``i``'s ``labels`` where ``other`` has the same label, 255 (ignored) elsewhere."""
    a, b = np.asarray(labels[i]), np.asarray(other[i])
    if a.shape != b.shape:
        raise DataError(f"image {i}: pseudo labels of shape {a.shape} cannot be compared with labels of shape "
                        f"{b.shape}; rerun with --force so that both are made from the same images.")
    return np.where(a == b, a, 255).astype(np.uint8)


def _stage_deeplab(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult, key: str,
                   labels: Sequence[np.ndarray]):
    path = folder.path("models", "deeplab.pt")
    names = data.points.class_names
    if folder.is_done("deeplab", key) and path.is_file():
        yield Progress("deeplab", 1, 1, message="cached")
        return load_segmenter(path, class_names=names, device=config.runtime.device)
    folder.forget("deeplab")
    start = time.perf_counter()
    radius = config.deeplab.click_radius
    if config.deeplab.click_override:  # painted on access: VOC-sized label sets never sit in memory
        labels = LazySequence(range(len(labels)), partial(painted, labels, data.points, radius))
    clicks = None
    if config.deeplab.click_weight > 0:
        clicks = LazySequence(range(len(labels)), partial(click_map, data.images.shapes, data.points, radius))
    trained = yield from train_deeplab(data.images, labels, len(names), config.deeplab,
                                       device=config.runtime.device, seed=config.runtime.seed,
                                       amp=config.runtime.amp, class_names=names,
                                       num_workers=config.runtime.num_workers, clicks=clicks)
    if distributed.is_main():
        save_segmenter(trained, path)
    folder.mark_done("deeplab", key, time.perf_counter() - start)
    return trained


def predict_all(segmenter: TrainedSegmenter, images: ImageStack, config: PipelineConfig, stage: str):
    """Label every image with the segmenter; yields one :class:`Progress` per image (preview = labels)."""
    out = []
    labels = segmenter.predict_many(images.images, device=config.runtime.device, amp=config.runtime.amp,
                                    crf_workers=config.runtime.crf_workers)
    for i, lab in enumerate(labels):
        out.append(lab)
        yield Progress(stage, i + 1, len(images), message=images.names[i], preview=lab)
    return out


def _stage_final(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult, key: str,
                 deeplab_file: Path | None):
    from .bundle import save_bundle

    names = data.points.class_names
    segmenter_crf = result.segmenter.config.crf

    def predict(images: ImageStack, stage: str):
        return lambda idx: predict_all(result.segmenter, images.subset(idx), config, stage)

    if config.deeplab.crf and config.deeplab.crf_check:  # the clicks decide whether the CRF is used
        result.final = yield from _stage_final_crf_check(data, config, folder, result, key)
        if result.segmenter.config.crf != segmenter_crf:
            deeplab_file = None  # models/deeplab.pt holds the other CRF setting
    else:
        result.final = yield from _stage_labels("final", predict(data.images, "final"), data.images, folder, key)
    yield from _check_clicks(folder, result, data.points, "final", result.final)
    if data.masks is not None:
        _update_metrics(folder, result, "train", "final", evaluate(data.masks, result.final, names))
    if data.val_images is not None:
        result.val_final = yield from _stage_labels("val_final", predict(data.val_images, "val_final"),
                                                    data.val_images, folder, fingerprint(key, data.val_images.images))
        _update_metrics(folder, result, "val", "final", evaluate(data.val_masks, result.val_final, names))
    bundle_done = (result.bundle_path / "bundle.json").is_file() and folder.is_done("bundle", key)
    if not bundle_done and distributed.is_main():
        models = folder.path("models")
        save_bundle(result.bundle_path, segmenter=result.segmenter, pcam=result.pcam,
                    irn_path=models / "irn.pt", config=config, pcam_path=models / "pcam.pt",
                    deeplab_path=deeplab_file)
        folder.mark_done("bundle", key, 0.0)


def _stage_final_crf_check(data: RunData, config: PipelineConfig, folder: RunFolder, result: RunResult, key: str):
    """The final labels of the training images for ``deeplab.crf_check``: labelled with and without the dense
    CRF, scored at the clicks (:func:`~.click_scores.choose_crf`), the chosen ones written to ``final/``; the
    decision goes into the calibration record and into ``result.segmenter``'s config (so the held-out images
    and the saved model use it). Cached with the labels (the manifest's ``crf_check`` entry)."""
    if distributed.info().enabled:
        raise ConfigError("deeplab.crf_check scores every training image's clicks in one process; run without "
                          "torchrun, or set deeplab.crf_check to false.")
    entry = folder.manifest["stages"].get("crf_check", {})
    if entry.get("key") != key:
        folder.forget("final")  # the labels on disk are not those of a decision made with these settings
    chosen: dict = {}

    def make_gen(idx: Sequence[int]):
        pairs = []
        both = predict_many_with_and_without_crf(
            result.segmenter.model, (data.images.images[i] for i in idx), result.segmenter.config,
            device=config.runtime.device, amp=config.runtime.amp, crf_workers=config.runtime.crf_workers)
        for j, pair in enumerate(both):
            pairs.append(pair)
            yield Progress("final", j + 1, len(idx), message=data.images.names[idx[j]], preview=pair[1])
        plain, crf = [p for p, _ in pairs], [c for _, c in pairs]
        chosen.update(choose_crf(click_scores(plain, data.points), click_scores(crf, data.points)))
        return crf if chosen["value"] else plain

    labels = yield from _stage_labels("final", make_gen, data.images, folder, key)
    if chosen:
        folder.mark_done("crf_check", key, 0.0, decision=chosen)
    decision = chosen or folder.manifest["stages"]["crf_check"]["decision"]
    _record_calibration(folder, result, {"deeplab.crf": decision})
    if not decision["value"]:
        yield Progress("check", 1, 1, message=(
            f"deeplab.crf: off, the final labels are DeepLabv3+'s own: {' '.join(decision['problems'])}"))
    result.segmenter = dataclasses.replace(result.segmenter, config=dataclasses.replace(
        result.segmenter.config, crf=decision["value"]))
    return labels


def _check_clicks(folder: RunFolder, result: RunResult, points: PointAnnotations, stage: str, labels: Sequence):
    """Score a stage's training labels at the clicks (``metrics.json`` "clicks"), and warn when they look
    degenerate (see :mod:`.click_scores`); yields one ``check`` record whose message carries the warnings.
    The labels of every stage stay in their own folder, so a collapsed stage never hides the previous one's."""
    scores = click_scores(labels, points)
    clicks = result.metrics.setdefault("clicks", {})
    previous = [(s, clicks[s]) for s in STAGES if s in clicks and STAGES.index(s) < STAGES.index(stage)]
    clicks[stage] = scores
    problems = stage_warnings(stage, scores, previous[-1] if previous else None)
    for problem in problems:
        warnings.warn(f"{problem} The previous stage's labels stay in the run folder.", StageWarning, stacklevel=2)
    _write_metrics(folder, result)
    yield Progress("check", 1, 1, message=" ".join(problems), metrics={"click_accuracy": scores["balanced"] or 0.0})


class StageWarning(UserWarning):
    """A stage's labels look degenerate at the clicks (one class everywhere, a clicked class lost, a collapse)."""


def _write_metrics(folder: RunFolder, result: RunResult) -> None:
    metrics = result.metrics
    done = set(metrics.get("train", {})) | set(metrics.get("val", {})) | set(metrics.get("clicks", {}))
    last = max((STAGES.index(s) for s in done if s in STAGES), default=-1)
    wanted = set(STAGES[: last + 1]) | ({"val_cams", "val_refined", "val_final"} if "val" in metrics else set())
    # the random walk's scores (for calibration) and DeepLabv3+'s label sources
    wanted |= {"walk", "mined", "forest"} if "irn" in wanted else set()
    metrics["seconds"] = {k: v for k, v in folder.seconds().items() if k in wanted}
    if distributed.is_main():
        atomic_write_text(folder.path("metrics.json"), json.dumps(metrics, indent=2) + "\n")


def _update_metrics(folder: RunFolder, result: RunResult, split: str, stage: str, scores: dict) -> None:
    """Add one score to this invocation's metrics and rewrite ``metrics.json`` atomically.

    The file describes the stages of the latest invocation only (cached stages are re-evaluated from their
    stored outputs), so no number from an older configuration survives a rerun.
    """
    metrics = result.metrics
    metrics.setdefault(split, {})[stage] = round(scores["miou"], 2)
    metrics.setdefault("per_class", {}).setdefault(split, {})[stage] = {
        k: (None if v is None else round(v, 2)) for k, v in scores["per_class"].items()
    }
    _write_metrics(folder, result)
