"""Final stage: train DeepLabv3+ on label maps, predict any image size, save and load the network.

DeepLabv3+ (Chen et al., ECCV 2018) trained with the recipe of the PCAM paper (McEver & Manjunath,
section 3.3): SGD with Nesterov momentum 0.9, lr 0.007, weight decay 4e-5, poly schedule (power 0.9),
cross-entropy that ignores the label 255, random rescale / crop / horizontal flip.

The label maps may be dense (the refined pseudo labels, or true masks for the fully supervised upper
bound) or sparse: 255 everywhere except the clicked pixels gives the point-only partial cross-entropy
baseline of Bearman et al., "What's the Point: Semantic Segmentation with Point Supervision", ECCV 2016
(without its objectness prior). Labelled pixels survive every downscaling, so single-pixel clicks are
never lost by the augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..checkpoints import load_checkpoint, save_checkpoint
from ..config import DeepLabConfig, from_dict, to_dict
from ..crf import crf_map, crf_probabilities, require_crf
from ..data.images import ImageStack, image_to_tensor, to_rgb8
from ..data.crops import crop_loader
from ..data.lazy import LazySequence
from ..device import autocast, resolve_device
from ..errors import CheckpointError, ConfigError, DataError
from ..models.deeplab import DeepLabV3Plus
from ..progress import Progress
from ..tiling import sliding_window

IGNORE = 255
STAGE = "deeplab"


@dataclass
class TrainedSegmenter:
    """A trained DeepLabv3+ with what is needed to save it and apply it to new images.

    Attributes:
        model: The network (eval mode).
        config: The config it was trained with.
        class_names: Name of every output class, index 0 = background.
        in_channels: Image channels it expects.
        losses: Training loss of every optimiser step.
    """

    model: DeepLabV3Plus
    config: DeepLabConfig
    class_names: tuple[str, ...]
    in_channels: int
    losses: list[float] = field(default_factory=list)

    def _settings(self) -> dict:
        cfg = self.config
        return dict(tile_size=cfg.tile_size, tile_overlap=cfg.tile_overlap, batch=cfg.batch_tiles,
                    scales=cfg.test_scales, flip=cfg.test_flip)

    def predict(self, image: np.ndarray, *, device: str | torch.device = "cpu", amp: bool = True) -> np.ndarray:
        """Label map (uint8 H x W) of one ``H x W x C`` image with the config's tiling, test-time and CRF
        settings."""
        return predict(self.model, image, device=device, amp=amp, crf=self.config.crf, **self._settings())

    def predict_many(
        self, images: Iterable[np.ndarray], *, device: str | torch.device = "cpu", amp: bool = True,
        crf_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """:meth:`predict` of every image, in order (consumed lazily).

        With ``config.crf`` and ``crf_workers`` > 0 the dense CRF runs in that many worker processes (the
        labels are the same): its C++ code holds the GIL, so only there it stalls neither the network
        nor a viewer's event loop.
        """
        if not self.config.crf or crf_workers <= 0:
            for image in images:
                yield self.predict(image, device=device, amp=amp)
            return
        require_crf("deeplab.crf")
        jobs = (_crf_job(self.model, image, device=device, amp=amp, **self._settings()) for image in images)
        yield from crf_map(crf_probabilities, jobs, crf_workers)


def build_deeplab(
    config: DeepLabConfig, *, num_classes: int, in_channels: int, weights: str | None = None
) -> DeepLabV3Plus:
    """Map a :class:`DeepLabConfig` to the network (``weights`` overrides ``config.weights``)."""
    return DeepLabV3Plus(
        backbone=config.backbone, weights=config.weights if weights is None else weights,
        in_channels=in_channels, num_classes=num_classes, freeze_bn=config.freeze_bn,
    )


def check_labels(images: ImageStack, labels: Sequence[np.ndarray], num_classes: int) -> None:
    """Check label maps against the images.

    Raises:
        DataError: count or shape mismatch, values other than 0..num_classes-1 and 255, or no labelled
            pixel at all; the message says which image and what to change.
    """
    if len(labels) != len(images):
        raise DataError(f"{len(labels)} label maps for {len(images)} images; give one label map per image.")
    labelled = 0
    for name, shape, lab in zip(images.names, images.shapes, labels):
        lab = np.asarray(lab)
        if lab.shape != tuple(shape):
            raise DataError(f"label map of {name!r} is {lab.shape}, but the image is {tuple(shape)}.")
        values = np.unique(lab)
        bad = values[(values != IGNORE) & ((values < 0) | (values >= num_classes))]
        if bad.size:
            raise DataError(
                f"label map of {name!r} holds value {int(bad[0])}; valid are 0..{num_classes - 1} and 255 (ignore)."
            )
        labelled += int(np.count_nonzero(lab != IGNORE))
    if labelled == 0:
        raise DataError(
            "every label map is 255 (ignore) everywhere, so there is nothing to train on; give labels for at "
            "least some pixels (e.g. clicked points, or pseudo labels with confident regions)."
        )


def _resize_labels(lab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """int64 H x W -> h x w by nearest neighbour; when shrinking, every labelled pixel is kept as well."""
    h, w = lab.shape
    out = F.interpolate(lab[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if size[0] < h or size[1] < w:
        ys, xs = torch.nonzero(lab != IGNORE, as_tuple=True)
        ny = ((ys.float() + 0.5) * size[0] / h).long().clamp_(0, size[0] - 1)
        nx = ((xs.float() + 0.5) * size[1] / w).long().clamp_(0, size[1] - 1)
        out[ny, nx] = lab[ys, xs]
    return out


def augment(
    img: torch.Tensor, lab: torch.Tensor, config: DeepLabConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rescale, pad, crop and flip of one image and its labels together.

    Args:
        img: float32 C x H x W normalised image (0 after normalisation = the mean, used for padding).
        lab: int64 H x W labels, 255 = ignore (used for padding).

    Returns:
        float32 C x S x S and int64 S x S, S = ``config.crop_size``.
    """
    s = float(rng.uniform(*config.scale_range))
    h, w = lab.shape
    size = (max(1, round(h * s)), max(1, round(w * s)))
    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
    lab = _resize_labels(lab, size)
    crop = config.crop_size
    ph, pw = max(0, crop - size[0]), max(0, crop - size[1])
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph), value=0.0)
        lab = F.pad(lab, (0, pw, 0, ph), value=IGNORE)
    y = int(rng.integers(0, lab.shape[0] - crop + 1))
    x = int(rng.integers(0, lab.shape[1] - crop + 1))
    img, lab = img[:, y : y + crop, x : x + crop], lab[y : y + crop, x : x + crop]
    if config.flip and rng.random() < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
    return img, lab


class _DeepLabCrop:
    """One augmented crop of image ``i`` and its labels (picklable, for loader workers)."""

    def __init__(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], config: DeepLabConfig):
        self.xs, self.ys, self.config = xs, ys, config

    def __call__(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(self.xs[i], self.ys[i], self.config, rng)


def _label_tensor(lab: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(lab, dtype=np.int64))


def _batch_indices(n: int, batch: int, steps: int, rng: np.random.Generator) -> Generator[np.ndarray, None, None]:
    """Indices of each step's images: consecutive shuffled epochs, cut into batches of ``batch``."""
    stream: list[int] = []
    for _ in range(steps):
        while len(stream) < batch:
            stream.extend(rng.permutation(n).tolist())
        yield np.array(stream[:batch])
        del stream[:batch]


def _optimizer(model: DeepLabV3Plus, config: DeepLabConfig) -> torch.optim.SGD:
    groups = [
        {"params": model.encoder_parameters(), "lr": config.lr, "base_lr": config.lr},
        {"params": model.head_parameters(), "lr": config.lr * config.head_lr_mult,
         "base_lr": config.lr * config.head_lr_mult},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay, nesterov=config.momentum > 0,
    )


def _train_step(
    model: nn.Module, opt: torch.optim.SGD, scaler: torch.amp.GradScaler, x: torch.Tensor, y: torch.Tensor, amp: bool
) -> float:
    """One SGD step on crops x (float32 B x C x S x S) and labels y (int64 B x S x S); returns the loss.

    The cross-entropy is averaged over the labelled pixels of the whole batch (0 when there are none).
    """
    with autocast(x.device, amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE, reduction="sum")
    loss = loss / (y != IGNORE).sum().clamp(min=1)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return float(loss.detach())


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    if class_names is None:
        return ("background",) + tuple(f"class_{i}" for i in range(1, num_classes))
    if len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class names for num_classes={num_classes}; give one per class.")
    return tuple(class_names)


def train_deeplab(
    images: ImageStack,
    labels: list[np.ndarray],
    num_classes: int,
    config: DeepLabConfig,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    amp: bool = True,
    init_state: dict[str, torch.Tensor] | None = None,
    class_names: Sequence[str] | None = None,
    num_workers: int = 0,
) -> Generator[Progress, None, TrainedSegmenter]:
    """Train DeepLabv3+ on label maps; yields one :class:`Progress` per optimiser step.

    Args:
        images: Training images (``H x W x C`` each).
        labels: uint8 ``H x W`` per image: class ids 0..num_classes-1, 255 = ignore (dense pseudo labels,
            true masks, or sparse click maps from :func:`napari_pcam.core.baselines.points_to_sparse_labels`).
        num_classes: Classes including background (K).
        config: Recipe; steps = max(ceil(epochs * N / batch), min_steps) with batch = max(batch_size, 2)
            (the ASPP image-pooling BatchNorm needs two crops per batch).
        device: 'auto', 'cpu', 'cuda', ... or a torch device.
        seed: Seeds the network initialisation (through torch's global generator) and the augmentation.
        amp: Mixed precision on CUDA.
        init_state: Optional state dict to start from (fine-tuning, or a previous run).
        class_names: Names of the K classes; default ``background, class_1, ...``.
        num_workers: DataLoader worker processes making the crops (0 = this process); same crops either way.

    Returns:
        The trained network (eval mode) with its config, class names and per-step losses.

    Raises:
        DataError: see :func:`check_labels`.
        ConfigError: ``class_names`` does not have ``num_classes`` entries.
    """
    check_labels(images, labels, num_classes)
    names = _class_names(class_names, num_classes)
    dev = resolve_device(device) if isinstance(device, str) else device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_deeplab(config, num_classes=num_classes, in_channels=images.channels,
                          weights="none" if init_state is not None else None)
    if init_state is not None:
        _load_state(model, init_state, "init_state")
    model.to(dev).train()
    # Converted per crop, so that (lazily read) datasets like VOC train_aug never sit in memory as tensors.
    xs = LazySequence(images.images, image_to_tensor)
    ys = LazySequence(labels, _label_tensor)
    batch = distributed.global_batch(config.batch_size, minimum_per_rank=2)  # ASPP pooling BN: 2 crops per rank
    total = max(math.ceil(config.epochs * len(xs) / batch), config.min_steps, 1)
    opt = _optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dev.type == "cuda")
    losses: list[float] = []
    net = distributed.wrap(model, dev)  # DistributedDataParallel under torchrun, the model itself otherwise
    yield Progress(STAGE, 0, total, message=f"training DeepLabv3+ ({config.backbone}) for {total} steps")
    # Every crop has its own generator: a rank's share, or a loader worker, makes the crops one process would.
    plan = [[int(i) for i in idx] for idx in _batch_indices(len(xs), batch, total, rng)]
    loader = crop_loader(_DeepLabCrop(xs, ys, config), plan, seed, num_workers=num_workers,
                         pin_memory=dev.type == "cuda", first_step=1)
    for step, (x, y) in enumerate(loader, start=1):
        for group in opt.param_groups:  # poly schedule, power 0.9
            group["lr"] = group["base_lr"] * (1.0 - (step - 1) / total) ** 0.9
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        losses.append(_train_step(net, opt, scaler, x, y, amp))
        yield Progress(STAGE, step, total, loss=losses[-1], metrics={"lr": opt.param_groups[0]["lr"]})
    model.eval()
    return TrainedSegmenter(model, config, names, images.channels, losses)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    image: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    tile_size: int = 1024,
    tile_overlap: int = 256,
    batch: int = 4,
    amp: bool = True,
) -> torch.Tensor:
    """Class scores of one image: float32 K x H x W logits (averaged over overlapping tiles).

    Args:
        model: Maps float32 B x C x h x w to logits B x K x h x w (moved to ``device``, set to eval mode).
        image: ``H x W x C`` image of any size (at least 16 x 16).
        device: Where to compute; the result is on the CPU.
        tile_size: Images larger than this in either dimension are processed in overlapping tiles.
        tile_overlap: Overlap of neighbouring tiles in pixels.
        batch: Tiles per forward pass.
        amp: Mixed precision on CUDA.
    """
    x, run = _prepare(model, image, device, amp)
    return sliding_window(run, x, tile_size=tile_size, overlap=tile_overlap, batch=batch).cpu()


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    image: np.ndarray,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    device: str | torch.device = "cpu",
    tile_size: int = 1024,
    tile_overlap: int = 256,
    batch: int = 4,
    amp: bool = True,
) -> torch.Tensor:
    """Class probabilities of one image (float32 K x H x W), averaged over test-time scales and flips.

    DeepLab's multi-scale test: the image is resized by every scale (at least 16 px a side), each pass's
    softmax is resized back and averaged, with the horizontally flipped image too when ``flip``.
    Other arguments as in :func:`predict_logits`.
    """
    x, run = _prepare(model, image, device, amp)
    h, w = x.shape[1:]
    total = None
    for scale in scales:
        size = (max(16, round(h * scale)), max(16, round(w * scale)))
        xs = x if size == (h, w) else F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        for flipped in (False, True) if flip else (False,):
            logits = sliding_window(run, xs.flip(-1) if flipped else xs, tile_size=tile_size, overlap=tile_overlap,
                                    batch=batch).float()
            if flipped:
                logits = logits.flip(-1)
            if size != (h, w):
                logits = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            probs = logits.softmax(0)
            total = probs if total is None else total + probs
    return (total / (len(scales) * (2 if flip else 1))).cpu()


def _prepare(model: nn.Module, image: np.ndarray, device: str | torch.device, amp: bool):
    """(image tensor C x H x W on the device, tile runner) after checking the image's channels."""
    dev = resolve_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    image = np.asarray(image)
    x = image_to_tensor(image if image.ndim == 3 else image[..., None]).to(dev)
    expected = getattr(model, "in_channels", x.shape[0])
    if x.shape[0] != expected:
        raise DataError(f"the image has {x.shape[0]} channel(s), but the model was trained on {expected}.")

    def run(tiles: torch.Tensor) -> torch.Tensor:
        with autocast(dev, amp):
            return model(tiles)

    return x, run


def predict(
    model: nn.Module,
    image: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    tile_size: int = 1024,
    tile_overlap: int = 256,
    batch: int = 4,
    amp: bool = True,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crf: bool = False,
) -> np.ndarray:
    """Label map (uint8 H x W) of one ``H x W x C`` image: the argmax of :func:`predict_logits`, or of
    :func:`predict_probabilities` with test-time ``scales`` other than (1.0,) or ``flip``; with ``crf``,
    those probabilities refined by a dense CRF (:func:`~napari_pcam.core.crf.crf_probabilities`)."""
    kwargs = dict(device=device, tile_size=tile_size, tile_overlap=tile_overlap, batch=batch, amp=amp)
    if crf:
        require_crf("deeplab.crf")
        return crf_probabilities(*_crf_job(model, image, scales=scales, flip=flip, **kwargs))
    if tuple(scales) == (1.0,) and not flip:
        scores = predict_logits(model, image, **kwargs)
    else:
        scores = predict_probabilities(model, image, scales=scales, flip=flip, **kwargs)
    return scores.argmax(0).numpy().astype(np.uint8)


def _crf_job(model: nn.Module, image: np.ndarray, **kwargs) -> tuple:
    """Arguments of :func:`~napari_pcam.core.crf.crf_probabilities` for one image (colour image,
    probabilities of :func:`predict_probabilities` with ``kwargs``, the setting named in errors), run in
    this process or sent to a CRF worker."""
    probs = predict_probabilities(model, image, **kwargs)
    return to_rgb8(np.asarray(image)), probs.numpy(), "deeplab.crf"


def save_segmenter(segmenter: TrainedSegmenter, path: str | Path) -> None:
    """Write ``{format_version, kind: 'deeplab', config, class_names, in_channels, state_dict}`` atomically."""
    save_checkpoint(
        path, kind="deeplab", config=to_dict(segmenter.config), class_names=segmenter.class_names,
        in_channels=segmenter.in_channels, state_dict=segmenter.model.state_dict(),
    )


def load_segmenter(
    path: str | Path, *, class_names: Sequence[str] | None = None, device: str | torch.device = "cpu"
) -> TrainedSegmenter:
    """Read a file written by :func:`save_segmenter` (tensors and plain data only, ``weights_only``).

    Args:
        path: The checkpoint file.
        class_names: When given, the checkpoint's classes must be exactly these.
        device: Where to put the network.

    Raises:
        CheckpointError: missing, corrupt or foreign file, another format version or kind, other classes,
            or weights that do not fit the network; the message says what to do.
    """
    data = load_checkpoint(path, kind="deeplab", class_names=class_names)
    names = tuple(data.get("class_names", ()))
    try:
        config = from_dict(DeepLabConfig, data["config"])
        in_channels = int(data["in_channels"])
        model = build_deeplab(config, num_classes=len(names), in_channels=in_channels, weights="none")
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{str(path)!r} has an invalid config, class list or channel count: {exc}") from exc
    _load_state(model, data["state_dict"], str(path))
    model.to(resolve_device(device) if isinstance(device, str) else device).eval()
    return TrainedSegmenter(model, config, names, in_channels)


def _load_state(model: nn.Module, state: object, source: str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} has no state dict of tensors.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the weights in {source} do not fit a DeepLabv3+ with this backbone and class count: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
