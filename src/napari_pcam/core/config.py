"""One frozen dataclass per stage, with the paper's defaults, plus the :class:`PipelineConfig`.

Defaults follow McEver & Manjunath, "PCAMs: Weakly Supervised Semantic Segmentation Using Point
Supervision" and, where the paper is silent, IRNet (Ahn et al., CVPR 2019). Every dataclass checks its
values in ``__post_init__`` and raises :class:`~napari_pcam.core.errors.ConfigError` with a message that
names the valid values. Configs round-trip through plain dicts, JSON and TOML so a run can be repeated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


DEEPLAB_LABELS = ("refined", "pcam", "mined", "best")
DEEPLAB_AGREE = ("none", "forest")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    _check(value in choices, f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}.")


def _check_range(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    bracket = "(" if lo_open else "["
    _check(ok, f"{name}={value!r} is out of range; it must lie in {bracket}{lo}, {hi}].")


def _check_crop(name: str, value: int) -> None:
    _check(
        isinstance(value, int) and value >= 32 and value % 16 == 0,
        f"{name}={value!r} is not valid; use a multiple of 16 of at least 32.",
    )


def _check_scale_range(name: str, value: Any) -> None:
    lo, hi = _pair(name, value)
    _check(0 < lo <= hi <= 8, f"{name}={value!r} must satisfy 0 < low <= high <= 8.")


def _check_encoder_name(name: str, value: Any) -> None:
    # The registry (core.models.encoders.ENCODERS) checks the name itself when a network is built, and the
    # pipeline checks every stage's before its first stage runs; config stays below the models layer.
    _check(isinstance(value, str) and value.strip() == value != "",
           f"{name}={value!r} is not valid; use an encoder name such as 'resnet50' or 'efficientnet_lite0'.")


def _check_weights(name: str, value: str) -> None:
    _check(
        isinstance(value, str) and value != "",
        f"{name}={value!r} is not valid; use 'imagenet', 'none' or the path of a .pth file.",
    )


@dataclass(frozen=True)
class CamConfig:
    """Training of the PCAM classifier (paper section 3.1).

    Attributes:
        backbone: Encoder registry name (``core.models.encoders.ENCODERS``); the paper uses resnet50.
        weights: 'imagenet' (torchvision's ResNet weights, cached or downloaded; the EfficientNet-Lites'
            installed weights package), 'none' (random init) or a path to a ``.pth`` state dict of the encoder.
        alpha: Weight of the point loss; 0 gives the plain CAM baseline.
        point_mode: 'clicks' uses the annotated points; 'all' uses every ground-truth mask pixel as a
            point (the paper's PCAM-F row; needs masks).
        detach_max: Whether the per-class spatial max used to normalise the CAMs in the point loss is
            treated as a constant. The paper does not say; we keep the gradient through the max (False)
            by default, which also pushes the peak of each map towards the clicked objects.
        lr_backbone: SGD learning rate of the backbone (the paper: 0.001).
        lr_classifier: SGD learning rate of the 1x1 classifier (the paper: 0.01, 10x the backbone).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        epochs: Passes over the training images.
        batch_size: Images per step.
        crop_size: Side of the square training crop in pixels (multiple of 16).
        scale_range: Random rescale range of the training images.
        flip: Random horizontal flips during training.
        min_steps: Lower bound on the number of optimiser steps (useful for tiny datasets).
        background_map: Learn a background map from the background clicks (point loss only), used in the
            argmax next to the constant background score; not in the paper (off), on in the 'cpu' preset.
        steps: Exactly this many optimiser steps when > 0, whatever the number of images (then ``epochs``
            and ``min_steps`` are ignored): a budget that is the same for 20 images and for 2,000.
    """

    backbone: str = "resnet50"
    weights: str = "imagenet"
    alpha: float = 0.1
    point_mode: Literal["clicks", "all"] = "clicks"
    detach_max: bool = False
    lr_backbone: float = 0.001
    lr_classifier: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 5
    batch_size: int = 16
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    min_steps: int = 0
    steps: int = 0
    background_map: bool = False

    def __post_init__(self) -> None:
        _check_encoder_name("cam.backbone", self.backbone)
        _check(isinstance(self.background_map, bool),
               f"cam.background_map={self.background_map!r} must be true or false.")
        _check(not (self.background_map and self.alpha == 0),
               "cam.background_map = true needs cam.alpha > 0: only the point loss trains the background map; "
               "set cam.background_map = false for plain CAMs (alpha 0).")
        _check_range("cam.steps", self.steps, 0, 10**7)
        _check_weights("cam.weights", self.weights)
        _check_range("cam.alpha", self.alpha, 0.0, 1e3)
        _check_choice("cam.point_mode", self.point_mode, ("clicks", "all"))
        _check_range("cam.lr_backbone", self.lr_backbone, 0.0, 10.0, lo_open=True)
        _check_range("cam.lr_classifier", self.lr_classifier, 0.0, 10.0, lo_open=True)
        _check_range("cam.momentum", self.momentum, 0.0, 0.999)
        _check_range("cam.weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("cam.epochs", self.epochs, 1, 100000)
        _check_range("cam.batch_size", self.batch_size, 1, 4096)
        _check_range("cam.min_steps", self.min_steps, 0, 10**7)
        _check_crop("cam.crop_size", self.crop_size)
        _check_scale_range("cam.scale_range", self.scale_range)


@dataclass(frozen=True)
class CamInferenceConfig:
    """Computing CAMs for images (IRNet's ``make_cam``), and turning them into labels.

    Attributes:
        scales: Image scales whose maps are summed (the paper: 1.0, 0.5, 1.5, 2.0).
        flip: Also add the maps of the horizontally flipped image.
        tile_size: Images (at a given scale) larger than this are processed in tiles of this side.
        tile_overlap: Overlap between tiles in pixels (multiple of 16).
        bg_threshold: Constant background score for argmax labels (0.3 for PCAMs in the paper,
            IRNet uses 0.15 for plain CAMs).
        restrict_to_labels: On training images, compute maps only for the classes clicked in the image
            (its image-level label), as IRNet does with ground-truth labels.
        batch_tiles: Tiles sent through the network at once.
    """

    scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
    flip: bool = True
    tile_size: int = 1024
    tile_overlap: int = 128
    bg_threshold: float = 0.3
    restrict_to_labels: bool = True
    batch_tiles: int = 4

    def __post_init__(self) -> None:
        _check(
            len(self.scales) > 0 and all(isinstance(s, (int, float)) and 0.05 <= s <= 8 for s in self.scales),
            f"cam_inference.scales={self.scales!r} must be a non-empty list of numbers in [0.05, 8].",
        )
        _check(
            isinstance(self.tile_size, int) and self.tile_size >= 64 and self.tile_size % 16 == 0,
            f"cam_inference.tile_size={self.tile_size!r} must be a multiple of 16 of at least 64.",
        )
        _check(
            isinstance(self.tile_overlap, int)
            and self.tile_overlap % 16 == 0
            and 0 <= self.tile_overlap <= self.tile_size // 2,
            f"cam_inference.tile_overlap={self.tile_overlap!r} must be a multiple of 16 between 0 and "
            "half the tile size.",
        )
        _check_range("cam_inference.bg_threshold", self.bg_threshold, 0.0, 1.0)
        _check_range("cam_inference.batch_tiles", self.batch_tiles, 1, 1024)


@dataclass(frozen=True)
class AffinityConfig:
    """Mining confident labels from PCAMs for IRNet (paper 3.2, IRNet's ``cam_to_ir_label``).

    Attributes:
        fg_threshold: Foreground where the best class score exceeds this (the paper: 0.3).
        bg_threshold: Background where every class score is below this (IRNet: 0.05).
        crf: Refine both label maps with a dense CRF (needs the optional ``pydensecrf2`` package).
    """

    fg_threshold: float = 0.3
    bg_threshold: float = 0.05
    crf: bool = False

    def __post_init__(self) -> None:
        _check_range("affinity.fg_threshold", self.fg_threshold, 0.0, 1.0)
        _check_range("affinity.bg_threshold", self.bg_threshold, 0.0, 1.0)
        _check(
            self.bg_threshold <= self.fg_threshold,
            f"affinity.bg_threshold={self.bg_threshold} must not exceed affinity.fg_threshold={self.fg_threshold}.",
        )


@dataclass(frozen=True)
class IrnConfig:
    """Training IRNet's boundary (and displacement) branches (IRNet's ``train_irn``).

    Attributes:
        backbone: Encoder registry name (frozen during training, as in IRNet).
        weights: 'imagenet', 'none' or a path; 'same' reuses the trained PCAM backbone.
        radius: Pair search radius at stride 4 during training (IRNet: 10).
        lr: SGD learning rate of the branches.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        epochs: Passes over the training images.
        batch_size: Images per step.
        crop_size: Side of the square training crop (multiple of 16).
        scale_range: Random rescale range.
        flip: Random horizontal flips during training.
        displacement: Also train the displacement branch (needed for instance masks).
        freeze_backbone: Keep the backbone fixed, as IRNet does (no gradients, BatchNorm in eval mode);
            False trains it with the branches (useful when it starts from random weights).
        min_steps: Lower bound on the number of optimiser steps.
        steps: Exactly this many optimiser steps when > 0, whatever the number of images (then ``epochs``
            and ``min_steps`` are ignored): a budget that is the same for 20 images and for 2,000.
    """

    backbone: str = "resnet50"
    weights: str = "same"
    radius: int = 10
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 3
    batch_size: int = 32
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    displacement: bool = True
    freeze_backbone: bool = True
    min_steps: int = 0
    steps: int = 0

    def __post_init__(self) -> None:
        _check_encoder_name("irn.backbone", self.backbone)
        _check_weights("irn.weights", self.weights)
        _check_range("irn.radius", self.radius, 2, 64)
        _check_range("irn.lr", self.lr, 0.0, 10.0, lo_open=True)
        _check_range("irn.momentum", self.momentum, 0.0, 0.999)
        _check_range("irn.weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("irn.epochs", self.epochs, 1, 100000)
        _check_range("irn.batch_size", self.batch_size, 1, 4096)
        _check_range("irn.min_steps", self.min_steps, 0, 10**7)
        _check_range("irn.steps", self.steps, 0, 10**7)
        _check_crop("irn.crop_size", self.crop_size)
        _check_scale_range("irn.scale_range", self.scale_range)


@dataclass(frozen=True)
class RandomWalkConfig:
    """Propagating CAMs with IRNet's affinities (paper 3.2).

    Attributes:
        radius: Neighbourhood radius at stride 4 (IRNet: 5, i.e. 34 directions).
        beta: Exponent of the affinities (the paper: 12; IRNet: 10).
        exp_times: log2 of the number of random-walk steps (8 -> 256 steps).
        bg_threshold: Constant background plane before the argmax (the paper: 0.3).
        instances: Also produce instance masks from the displacement field.
        flip: Average the boundary maps of the image and its horizontal flip (IRNet).
        instance_bg_threshold: Background plane for instance masks (IRNet: 0.25).
        cluster_threshold: Displacement length (stride-4 pixels) below which pixels count as instance
            centres when grouping centroids (IRNet: 2.5).
        centroid_iterations: Steps of following the displacement field to the centroids (IRNet: 300).
        min_instance_area: Instance fragments smaller than this many image pixels become background.
    """

    radius: int = 5
    beta: float = 12.0
    exp_times: int = 8
    bg_threshold: float = 0.3
    instances: bool = False
    flip: bool = True
    instance_bg_threshold: float = 0.25
    cluster_threshold: float = 2.5
    centroid_iterations: int = 300
    min_instance_area: int = 16

    def __post_init__(self) -> None:
        _check_range("random_walk.radius", self.radius, 2, 64)
        _check_range("random_walk.instance_bg_threshold", self.instance_bg_threshold, 0.0, 1.0)
        _check_range("random_walk.cluster_threshold", self.cluster_threshold, 0.0, 1000.0, lo_open=True)
        _check_range("random_walk.centroid_iterations", self.centroid_iterations, 1, 100000)
        _check_range("random_walk.min_instance_area", self.min_instance_area, 0, 10**9)
        _check_range("random_walk.beta", self.beta, 0.0, 1000.0, lo_open=True)
        _check_range("random_walk.exp_times", self.exp_times, 0, 16)
        _check_range("random_walk.bg_threshold", self.bg_threshold, 0.0, 1.0)


@dataclass(frozen=True)
class DeepLabConfig:
    """DeepLabv3+ trained on the refined pseudo labels (paper 3.3).

    Attributes:
        backbone: Encoder registry name (output stride 16, last stage dilated).
        weights: 'imagenet', 'none' or a path.
        lr: SGD (Nesterov) learning rate (the paper: 0.007), poly schedule.
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (4e-5).
        epochs: Passes over the training images.
        batch_size: Images per step.
        crop_size: Side of the square training crop (smaller rescaled images are padded with ignore).
        scale_range: Random rescale range.
        flip: Random horizontal flips during training.
        head_lr_mult: Learning-rate factor of the new ASPP and decoder layers (1 = the paper's single lr).
        head_norm: Normalisation of the new ASPP and decoder layers: 'batch' (BatchNorm, the paper's, with its
            batches of 16 crops) or 'group' (GroupNorm, independent of the batch: for the few small crops of a CPU
            budget, where BatchNorm's training statistics do not match inference; see
            :mod:`napari_pcam.core.models.deeplab`).
        freeze_bn: Keep the encoder's BatchNorm fixed (ImageNet statistics) instead of fine-tuning it as
            DeepLab does (False; needs batches of several crops). Only allowed with pretrained weights.
        tile_size: Sliding-window size for inference on large images.
        tile_overlap: Sliding-window overlap in pixels.
        batch_tiles: Tiles sent through the network at once during inference.
        test_scales: Image scales whose class probabilities are averaged at inference (DeepLab's multi-scale
            test; (1.0,) = single scale).
        test_flip: Also average the probabilities of the horizontally flipped image at inference.
        crf: Refine the predicted probabilities with a dense CRF at inference (DeepLab v1/v2's
            post-processing, IRNet's kernels; needs the optional ``pydensecrf2`` package). Not in the
            paper's DeepLabv3+, so off by default and in the sample preset (``docs/sample_crf.toml``
            turns it on).
        crf_check: With ``crf``, let the clicks decide whether the CRF is used: the training images are
            labelled with and without it, and the CRF is kept unless its labels collapse at the clicks where
            the network's own do not (the stage guard's measures, :func:`~.click_scores.choose_crf`: a
            clicked class lost or almost lost, one class everywhere, a click score 15 points under the
            network's). The scores, the decision and its reasons go into ``run.json``'s calibration record,
            and the saved model keeps the decision (its ``crf`` is what the clicks chose). On the sample's
            grayscale variant the CRF took 32% of the clicks right against 97% without it. Ignored without
            ``crf``.
        min_steps: Lower bound on the number of optimiser steps.
        steps: Exactly this many optimiser steps when > 0, whatever the number of images (then ``epochs``
            and ``min_steps`` are ignored): a budget that is the same for 20 images and for 2,000.
        click_override: Train on the pseudo labels with every click's disc set to the click's class (a
            pseudo label that contradicts a click is wrong by definition). Not in the paper, so off by default.
        click_radius: Radius of that disc in pixels (0 = the clicked pixel only), for ``click_override`` and
            ``click_weight``.
        click_weight: Add this weight x a cross-entropy averaged over the clicked discs alone to the loss on
            the pseudo labels (0 = the paper's loss). At 1 the few clicked pixels weigh as much as all pseudo
            labels together, as in the point-only baseline's loss; not in the paper, so off by default. When
            images are large against the crops, a batch holds one click or none and that click's term dominates:
            on dubai (6 crops of 160 px from 500-1100 px images) weight 4 collapsed DeepLabv3+ to one or two
            classes, which is why the ``cpu`` preset overrides with the clicks (``click_override``) instead.
        click_norm: How ``click_weight`` counts. 'clicks' (the default): the clicks' term is its own average
            over the clicked pixels of the batch, added with that weight. 'labels': the pseudo labels and the
            clicks share one average, each clicked pixel weighing ``click_weight`` pseudo-labelled pixels, so
            that the clicks' share of the loss follows how densely the images are clicked (about 8 clicks per
            128 x 128 px image on the sample, one per 60,000 px on dubai) instead of how many clicks a batch
            happens to hold.
        crf_loss: Add this weight x the gated CRF loss of the network's scores on each training crop
            (Obukhov et al. 2019, a local form of Tang et al.'s dense CRF loss, ECCV 2018;
            :mod:`napari_pcam.core.crf_loss`): neighbours of similar colour should share a label, so labels
            spread from the clicks and confident pseudo labels up to colour edges. 0 = the paper's loss.
        train_on: The pseudo labels DeepLabv3+ learns from: 'refined' (the random walk's, the paper), 'pcam'
            (the PCAM's CAM labels), 'mined' (PCAM's confident labels as IRNet mines them with the
            ``affinity`` thresholds, the rest ignored) or 'best': whichever of 'refined' and 'pcam' labels
            the held-out clicks of calibration better (refined unless PCAM's score is higher by more than
            ``calibration.tolerance``; refined, with a warning, when there are no held-out clicks).
        agree_with: 'forest': keep a pseudo label only where a random forest trained on the clicks (the
            benchmark's pixel classifier, :func:`~.baselines.random_forest_steps`, with the run's seed) labels
            the pixel the same, ignore it elsewhere; the forest's labels of the training images are written to
            ``forest/`` and scored in ``metrics.json``. Two label sources that err differently (PCAM's blobs
            spill over object edges, the forest confuses look-alike textures) agree mostly where both are
            right. 'none' (the paper): every pseudo label counts. Not in the paper.
        class_balance: Weigh each pseudo-labelled pixel's cross-entropy by its class's median frequency
            balancing weight (Eigen & Fergus, ICCV 2015; the median class frequency in the pseudo labels over
            the class's own, clipped to [0.1, 10]), so that a class with few pseudo labels is not drowned by
            the common ones. Weights are computed from the training labels at the start of training. Not in
            the paper, and off by default and in every preset: on dubai (seed 0, agreement labels) it moved
            DeepLabv3+'s collapse from land and water to road and building (train mIoU 20.5 -> 2.3).
    """

    backbone: str = "resnet50"
    weights: str = "imagenet"
    lr: float = 0.007
    momentum: float = 0.9
    weight_decay: float = 4e-5
    epochs: int = 30
    batch_size: int = 16
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    head_lr_mult: float = 1.0
    head_norm: Literal["batch", "group"] = "batch"
    freeze_bn: bool = False
    tile_size: int = 1024
    tile_overlap: int = 256
    batch_tiles: int = 4
    test_scales: tuple[float, ...] = (1.0,)
    test_flip: bool = False
    crf: bool = False
    crf_check: bool = False
    min_steps: int = 0
    steps: int = 0
    click_override: bool = False
    click_radius: int = 2
    click_weight: float = 0.0
    click_norm: Literal["clicks", "labels"] = "clicks"
    crf_loss: float = 0.0
    train_on: str = "refined"
    agree_with: str = "none"
    class_balance: bool = False

    def __post_init__(self) -> None:
        _check_encoder_name("deeplab.backbone", self.backbone)
        _check_choice("deeplab.train_on", self.train_on, DEEPLAB_LABELS)
        _check_choice("deeplab.agree_with", self.agree_with, DEEPLAB_AGREE)
        _check_choice("deeplab.class_balance", self.class_balance, (False, True))
        _check_choice("deeplab.head_norm", self.head_norm, ("batch", "group"))
        _check_range("deeplab.click_radius", self.click_radius, 0, 1000)
        _check_range("deeplab.click_weight", self.click_weight, 0.0, 1000.0)
        _check_choice("deeplab.click_norm", self.click_norm, ("clicks", "labels"))
        _check_range("deeplab.crf_loss", self.crf_loss, 0.0, 1000.0)
        _check_weights("deeplab.weights", self.weights)
        _check_range("deeplab.lr", self.lr, 0.0, 10.0, lo_open=True)
        _check_range("deeplab.momentum", self.momentum, 0.0, 0.999)
        _check_range("deeplab.weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("deeplab.epochs", self.epochs, 1, 100000)
        _check_range("deeplab.batch_size", self.batch_size, 1, 4096)
        _check_range("deeplab.min_steps", self.min_steps, 0, 10**7)
        _check_range("deeplab.steps", self.steps, 0, 10**7)
        _check_range("deeplab.head_lr_mult", self.head_lr_mult, 0.0, 1000.0, lo_open=True)
        _check_range("deeplab.batch_tiles", self.batch_tiles, 1, 1024)
        _check(
            not (self.freeze_bn and self.weights == "none"),
            "deeplab.freeze_bn=True needs pretrained weights; with deeplab.weights='none' BatchNorm must train.",
        )
        _check_crop("deeplab.crop_size", self.crop_size)
        _check(
            isinstance(self.tile_size, int) and self.tile_size >= 64 and self.tile_size % 16 == 0,
            f"deeplab.tile_size={self.tile_size!r} must be a multiple of 16 of at least 64.",
        )
        _check(
            isinstance(self.tile_overlap, int) and 0 <= self.tile_overlap <= self.tile_size // 2,
            f"deeplab.tile_overlap={self.tile_overlap!r} must lie between 0 and half the tile size.",
        )
        _check_scale_range("deeplab.scale_range", self.scale_range)
        _check(
            len(self.test_scales) > 0 and all(isinstance(v, (int, float)) and 0.05 <= v <= 8 for v in self.test_scales),
            f"deeplab.test_scales={self.test_scales!r} must be a non-empty list of numbers in [0.05, 8].",
        )


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how to run.

    Attributes:
        device: 'auto' (cuda > mps > cpu) or a device name.
        amp: Mixed precision on CUDA.
        seed: Seed of every random generator.
        num_workers: DataLoader worker processes (0 = in the main process).
        crf_workers: Processes running the dense CRFs (IRNet's on the mined labels, ``deeplab.crf`` on the
            final predictions; 0 = the main process; same labels either way). The CRF holds the GIL for
            tens of milliseconds per call, so the viewer runs it in a worker process.
    """

    device: str = "auto"
    amp: bool = True
    seed: int = 0
    num_workers: int = 0
    crf_workers: int = 0

    def __post_init__(self) -> None:
        base = self.device.split(":")[0] if isinstance(self.device, str) else self.device
        _check_choice("runtime.device", base, DEVICE_NAMES)
        _check_range("runtime.seed", self.seed, 0, 2**32 - 1)
        _check_range("runtime.num_workers", self.num_workers, 0, 256)
        _check_range("runtime.crf_workers", self.crf_workers, 0, 256)


@dataclass(frozen=True)
class CalibrationConfig:
    """Thresholds chosen from the clicks instead of fixed (see :mod:`napari_pcam.core.calibration`).

    A stratified share of the clicks is held out of PCAM training; the CAM background threshold, IRNet's
    foreground / background mining thresholds and the random walk's background are then chosen on those
    held-out clicks, which no network has seen. Off, the thresholds of ``cam_inference``, ``affinity`` and
    ``random_walk`` apply as configured (the paper's 0.3 / 0.3 / 0.05 / 0.3 by default).

    Attributes:
        enabled: Choose the thresholds from held-out clicks.
        held_out: Fraction of each class's clicks held out of PCAM training, but at least ``min_clicks``
            while that is at most half of them (never an image's last click of a class, so the image-level
            labels stay the same).
        min_clicks: Held-out clicks every clicked class needs; with fewer the run warns and uses the
            configured thresholds, training on all clicks (the documented fallback).
        precision: Class-balanced precision at the held-out clicks that IRNet's mined foreground and
            background must reach; the most permissive thresholds that reach it are chosen.
        tolerance: Background thresholds whose held-out click score is within this many points of the best
            form the plateau whose middle is chosen (robust to a single lucky click).
    """

    enabled: bool = False
    held_out: float = 0.2
    min_clicks: int = 5
    precision: float = 0.9
    tolerance: float = 1.0

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), f"calibration.enabled={self.enabled!r} must be true or false.")
        _check_range("calibration.held_out", self.held_out, 0.0, 0.5, lo_open=True)
        _check_range("calibration.min_clicks", self.min_clicks, 1, 10**6)
        _check_range("calibration.precision", self.precision, 0.0, 1.0, lo_open=True)
        _check_range("calibration.tolerance", self.tolerance, 0.0, 100.0)


@dataclass(frozen=True)
class PipelineConfig:
    """All stages of a run. Sections appear in TOML as ``[cam]``, ``[cam_inference]``, ..."""

    cam: CamConfig = field(default_factory=CamConfig)
    cam_inference: CamInferenceConfig = field(default_factory=CamInferenceConfig)
    affinity: AffinityConfig = field(default_factory=AffinityConfig)
    irn: IrnConfig = field(default_factory=IrnConfig)
    random_walk: RandomWalkConfig = field(default_factory=RandomWalkConfig)
    deeplab: DeepLabConfig = field(default_factory=DeepLabConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists) suitable for JSON, TOML and checkpoints."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineConfig":
        """Build from a (possibly partial) nested dict; unknown keys are errors."""
        return from_dict(cls, data)

    def save(self, path: str | Path) -> None:
        """Write as ``.toml`` or ``.json`` (by suffix), atomically."""
        save_config(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "PipelineConfig":
        """Read a ``.toml`` or ``.json`` file written by :meth:`save` (or by hand)."""
        return load_config(path)


def _pair(name: str, value: Any) -> tuple[float, float]:
    _check(
        isinstance(value, (tuple, list)) and len(value) == 2,
        f"{name}={value!r} must be a pair of numbers [low, high].",
    )
    return float(value[0]), float(value[1])


def to_dict(cfg: Any) -> dict[str, Any]:
    """Convert a config dataclass (nested) into plain dicts and lists."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return convert(cfg)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a nested dict, converting lists back to tuples."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or 'root'!r} must be a table/dict, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(names))}."
        )
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, prefix + key + ".")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # e.g. a wrong type that __post_init__ could not compare
        raise ConfigError(f"invalid value in config section {prefix or 'root'!r}: {exc}") from exc


def save_config(cfg: PipelineConfig, path: str | Path) -> None:
    """Write a config as TOML or JSON (chosen by the suffix), atomically."""
    from .io import atomic_write_text

    path = Path(path)
    data = to_dict(cfg)
    if path.suffix.lower() == ".toml":
        import tomli_w

        text = tomli_w.dumps(data)
    elif path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        raise ConfigError(f"cannot save config as {path.name!r}: use a .toml or .json file name.")
    atomic_write_text(path, text)


def load_config(path: str | Path) -> PipelineConfig:
    """Read a TOML or JSON config; sections and keys left out keep their defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text())
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            raise ConfigError(f"cannot read config {path.name!r}: use a .toml or .json file.")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    return from_dict(PipelineConfig, data)
