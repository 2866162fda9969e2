"""Final stage: train DeepLabv3+ on label maps, save and load the network (applying it to images:
:mod:`napari_pcam.core.stages.segmentation_inference`).

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
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..config import DeepLabConfig, from_dict
from ..crf_loss import gated_crf_loss, image_from_tensor
from ..data.crops import crop_loader
from ..data.images import ImageStack, image_to_tensor
from ..data.lazy import LazySequence
from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..models.deeplab import DeepLabV3Plus
from ..progress import Progress
from ..training import TrainedNetwork, fit, load_state, planned_steps, shuffled_batches
from . import segmentation_inference as inference

IGNORE = 255
STAGE = "deeplab"
NETWORK = "a DeepLabv3+ with this backbone and class count"


@dataclass
class TrainedSegmenter(TrainedNetwork):
    """A trained DeepLabv3+ with what is needed to save it and apply it to new images (a 'deeplab' checkpoint).

    Attributes:
        model: The network (eval mode).
        config: The config it was trained with.
        class_names: Name of every output class, index 0 = background.
        in_channels: Image channels it expects.
        losses: Training loss of every optimiser step (not saved).
    """

    kind: ClassVar[str] = "deeplab"
    network: ClassVar[str] = "DeepLabv3+"
    model: DeepLabV3Plus
    config: DeepLabConfig
    class_names: tuple[str, ...]
    in_channels: int
    losses: list[float] = field(default_factory=list)

    def predict(self, image: np.ndarray, *, device: str | torch.device = "cpu", amp: bool = True) -> np.ndarray:
        """Label map (uint8 H x W) of one ``H x W x C`` image with the config's tiling, test-time and CRF
        settings."""
        return inference.predict(self.model, image, device=device, amp=amp, crf=self.config.crf,
                                 **inference.inference_settings(self.config))

    def predict_many(
        self, images: Iterable[np.ndarray], *, device: str | torch.device = "cpu", amp: bool = True,
        crf_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """:meth:`predict` of every image, in order (consumed lazily); ``crf_workers`` as in
        :func:`~napari_pcam.core.stages.segmentation_inference.predict_many`."""
        return inference.predict_many(self.model, images, self.config, device=device, amp=amp,
                                      crf_workers=crf_workers)

    def checkpoint_fields(self) -> dict:
        return {"class_names": self.class_names, "in_channels": self.in_channels}

    @classmethod
    def from_checkpoint(cls, data: dict, source: str, device: str | torch.device = "cpu") -> TrainedSegmenter:
        names = tuple(data.get("class_names", ()))
        config = from_dict(DeepLabConfig, data["config"])
        in_channels = int(data["in_channels"])
        model = build_deeplab(config, num_classes=len(names), in_channels=in_channels, weights="none")
        load_state(model, data["state_dict"], source, NETWORK)
        model.to(resolve_device(device) if isinstance(device, str) else device).eval()
        return cls(model, config, names, in_channels)


def build_deeplab(
    config: DeepLabConfig, *, num_classes: int, in_channels: int, weights: str | None = None
) -> DeepLabV3Plus:
    """Map a :class:`DeepLabConfig` to the network (``weights`` overrides ``config.weights``)."""
    return DeepLabV3Plus(
        backbone=config.backbone, weights=config.weights if weights is None else weights,
        in_channels=in_channels, num_classes=num_classes, freeze_bn=config.freeze_bn, head_norm=config.head_norm,
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
        lab: int64 H x W labels, 255 = ignore (used for padding), or L x H x W: several label maps of the
            image (e.g. pseudo labels and the click map) that all follow the same transform.

    Returns:
        float32 C x S x S and int64 S x S (or L x S x S), S = ``config.crop_size``.
    """
    s = float(rng.uniform(*config.scale_range))
    h, w = lab.shape[-2:]
    size = (max(1, round(h * s)), max(1, round(w * s)))
    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
    lab = _resize_labels(lab, size) if lab.ndim == 2 else torch.stack([_resize_labels(m, size) for m in lab])
    crop = config.crop_size
    ph, pw = max(0, crop - size[0]), max(0, crop - size[1])
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph), value=0.0)
        lab = F.pad(lab, (0, pw, 0, ph), value=IGNORE)
    y = int(rng.integers(0, lab.shape[-2] - crop + 1))
    x = int(rng.integers(0, lab.shape[-1] - crop + 1))
    img, lab = img[:, y : y + crop, x : x + crop], lab[..., y : y + crop, x : x + crop]
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


def _label_stack(labels: Sequence[np.ndarray], clicks: Sequence[np.ndarray] | None, valid: bool, i: int
                 ) -> torch.Tensor:
    """int64 L x H x W: image ``i``'s labels, its click map (when ``clicks`` is given) and, with ``valid``, a map
    of 1s that the augmentation's padding turns into 255 (where the CRF loss has no pixels); picklable through
    functools.partial."""
    lab = _label_tensor(labels[i])
    maps = [lab] + ([_label_tensor(clicks[i])] if clicks is not None else [])
    if valid:
        maps.append(torch.ones_like(lab))
    return torch.stack(maps)


def _optimizer(model: DeepLabV3Plus, config: DeepLabConfig) -> torch.optim.SGD:
    groups = [
        {"params": model.encoder_parameters(), "lr": config.lr},
        {"params": model.head_parameters(), "lr": config.lr * config.head_lr_mult},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay, nesterov=config.momentum > 0,
    )


def _mean_ce(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy averaged over the labelled pixels of the whole batch (0 when there are none); with
    per-class ``weight``, each pixel's term weighed by its class's weight and divided by their sum."""
    total, mass = _sum_ce(logits, y, weight)
    return total / mass.clamp(min=1e-12)


def class_balance_weights(labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """float32 per-class weights of median frequency balancing (Eigen & Fergus, ICCV 2015): the median of the
    classes' pixel frequencies in ``labels`` over each class's own, clipped to [0.1, 10] (255 is not counted);
    1 for a class without labelled pixels."""
    counts = np.zeros(num_classes, np.int64)
    for i in range(len(labels)):
        lab = np.asarray(labels[i]).ravel()
        counts += np.bincount(lab[lab != IGNORE], minlength=num_classes)[:num_classes]
    weights = np.ones(num_classes, np.float32)
    present = counts > 0
    if present.any():
        freq = counts[present] / counts.sum()
        weights[present] = np.clip(np.median(freq) / freq, 0.1, 10.0)
    return weights


def _sum_ce(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
    """Summed cross-entropy over the labelled pixels and the summed weight of those pixels (their count, or with
    per-class ``weight`` the sum of their classes' weights)."""
    labelled = y != IGNORE
    if weight is None:
        return F.cross_entropy(logits, y, ignore_index=IGNORE, reduction="sum"), labelled.sum().to(logits.dtype)
    weight = weight.to(logits)
    return (F.cross_entropy(logits, y, weight=weight, ignore_index=IGNORE, reduction="sum"),
            weight[y[labelled]].sum())


def _pixel_weighted_loss(logits: torch.Tensor, y: torch.Tensor, clicks: torch.Tensor, click_weight: float,
                         class_weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
    """``deeplab.click_norm = "labels"``: one cross-entropy averaged over the labelled and the clicked pixels of
    the batch, every clicked pixel weighing ``click_weight`` pseudo-labelled pixels (on top of its own pseudo
    label, if any). The clicks' share of the loss follows how densely the images are clicked: it does not grow
    when a batch happens to hold one click, and it is 0 in a batch without clicks."""
    label_sum, label_mass = _sum_ce(logits, y, class_weights)
    click_sum, click_count = _sum_ce(logits, clicks)
    mass = label_mass + click_weight * click_count
    total = (label_sum + click_weight * click_sum) / mass.clamp(min=1e-12)
    metrics = {"label_loss": (label_sum / label_mass.clamp(min=1e-12)).detach().item(),
               "click_loss": (click_sum / click_count.clamp(min=1)).detach().item(),
               "click_share": (click_weight * click_count / mass.clamp(min=1e-12)).detach().item()}
    return total, metrics


def _loss(logits: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor], click_weight: float = 0.0,
          crf_weight: float = 0.0, class_weights: torch.Tensor | None = None,
          click_norm: str = "clicks") -> tuple[torch.Tensor, dict]:
    """Cross-entropy of float B x K x S x S logits against int64 B x S x S labels, averaged over the labelled
    pixels of the whole batch. With B x L x S x S label maps (labels, then the click map when ``click_weight``
    > 0, then the valid map when ``crf_weight`` > 0), plus ``click_weight`` x the cross-entropy averaged over the
    clicked pixels alone (the clicks then weigh as much as all other pixels together at weight 1, however few
    they are, and nothing in a crop without clicks), plus ``crf_weight`` x the gated CRF loss of the network's
    scores on the crops (:func:`~napari_pcam.core.crf_loss.gated_crf_loss`, padding excluded). ``class_weights``
    weigh the label term's pixels by class (``deeplab.class_balance``); the clicks' term is not weighed. With
    ``click_norm = "labels"`` the labels and the clicks share one average instead, each clicked pixel weighing
    ``click_weight`` labelled pixels (:func:`_pixel_weighted_loss`)."""
    y, logits = batch[1], logits.float()
    if y.ndim == 3:
        return _mean_ce(logits, y, class_weights), {}
    if click_weight > 0 and click_norm == "labels":
        total, metrics = _pixel_weighted_loss(logits, y[:, 0], y[:, 1], click_weight, class_weights)
    else:
        total = labels = _mean_ce(logits, y[:, 0], class_weights)
        metrics = {"label_loss": labels.detach().item()}
        if click_weight > 0:
            clicks = _mean_ce(logits, y[:, 1])
            total = total + click_weight * clicks
            metrics["click_loss"] = clicks.detach().item()
    if crf_weight > 0:
        crf = gated_crf_loss(logits, image_from_tensor(batch[0].float()), y[:, -1] != IGNORE)
        total = total + crf_weight * crf
        metrics["crf_loss"] = crf.detach().item()
    return total, metrics


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
    clicks: Sequence[np.ndarray] | None = None,
) -> Generator[Progress, None, TrainedSegmenter]:
    """Train DeepLabv3+ on label maps; yields one :class:`Progress` per optimiser step.

    Args:
        images: Training images (``H x W x C`` each).
        labels: uint8 ``H x W`` per image: class ids 0..num_classes-1, 255 = ignore (dense pseudo labels,
            true masks, or sparse click maps from :func:`napari_pcam.core.baselines.points_to_sparse_labels`).
        clicks: With ``config.click_weight`` > 0, a sparse click map per image (as ``labels``, 255 away from
            the clicks) whose own cross-entropy is added with that weight; required then, refused otherwise.
        num_classes: Classes including background (K).
        config: Recipe; steps = ``config.steps`` if set, else max(ceil(epochs * N / batch), min_steps) with
            batch = max(batch_size, 2) (the ASPP image-pooling BatchNorm needs two crops per batch).
        device: 'auto', 'cpu', 'cuda', ... or a torch device.
        seed: Seeds the network initialisation (through torch's global generator) and the augmentation.
        amp: Mixed precision on CUDA.
        init_state: Optional state dict to start from (fine-tuning, or a previous run).
        class_names: Names of the K classes; default ``background, class_1, ...``.
        num_workers: DataLoader worker processes making the crops (0 = this process); same crops either way.

    Returns:
        The trained network (eval mode) with its config, class names and per-step losses.

    Raises:
        DataError: see :func:`check_labels` (for ``labels`` and ``clicks``).
        ConfigError: ``class_names`` does not have ``num_classes`` entries, or ``clicks`` is missing with
            ``config.click_weight`` > 0 (or given with 0).
    """
    check_labels(images, labels, num_classes)
    if (clicks is not None) != (config.click_weight > 0):
        why = "needs the click maps (clicks=...)." if clicks is None else "is 0, so the click maps would be unused."
        raise ConfigError(f"deeplab.click_weight={config.click_weight} {why} Give both or neither.")
    if clicks is not None:
        check_labels(images, clicks, num_classes)
    names = _class_names(class_names, num_classes)
    dev = resolve_device(device) if isinstance(device, str) else device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_deeplab(config, num_classes=num_classes, in_channels=images.channels,
                          weights="none" if init_state is not None else None)
    if init_state is not None:
        load_state(model, init_state, "init_state", NETWORK)
    model.to(dev)
    # Converted per crop, so that (lazily read) datasets like VOC train_aug never sit in memory as tensors.
    xs = LazySequence(images.images, image_to_tensor)
    crf_weight = config.crf_loss
    ys = (LazySequence(labels, _label_tensor) if clicks is None and crf_weight == 0
          else LazySequence(range(len(labels)), partial(_label_stack, labels, clicks, crf_weight > 0)))
    batch = distributed.global_batch(config.batch_size, minimum_per_rank=2)  # ASPP pooling BN: 2 crops per rank
    total = planned_steps(config, math.ceil(config.epochs * len(xs) / batch))
    yield Progress(STAGE, 0, total, message=f"training DeepLabv3+ ({config.backbone}) for {total} steps")
    plan = shuffled_batches(len(xs), batch, total, rng)
    loader = crop_loader(_DeepLabCrop(xs, ys, config), plan, seed, num_workers=num_workers,
                         pin_memory=dev.type == "cuda", first_step=1)
    weights = None
    if config.class_balance:
        weights = torch.from_numpy(class_balance_weights(labels, num_classes))
        yield Progress(STAGE, 0, total, message="class weights " + ", ".join(
            f"{n} {w:.2f}" for n, w in zip(names, weights.tolist())))
    loss = partial(_loss, click_weight=config.click_weight if clicks is not None else 0.0, crf_weight=crf_weight,
                   class_weights=weights, click_norm=config.click_norm)
    losses = yield from fit(STAGE, model, _optimizer(model, config), loader, total, loss, device=dev, amp=amp,
                            lr_settings="deeplab.lr")
    return TrainedSegmenter(model, config, names, images.channels, losses)


def save_segmenter(segmenter: TrainedSegmenter, path: str | Path) -> None:
    """Write ``segmenter`` as a 'deeplab' checkpoint atomically (:meth:`TrainedSegmenter.save`)."""
    segmenter.save(path)


def load_segmenter(
    path: str | Path, *, class_names: Sequence[str] | None = None, device: str | torch.device = "cpu"
) -> TrainedSegmenter:
    """Read a 'deeplab' checkpoint (:meth:`TrainedSegmenter.load`: tensors and plain data only, ``weights_only``).

    Args:
        path: The checkpoint file.
        class_names: When given, the checkpoint's classes must be exactly these.
        device: Where to put the network.

    Raises:
        CheckpointError: missing, corrupt or foreign file, another format version or kind, other classes,
            or weights that do not fit the network; the message says what to do.
    """
    return TrainedSegmenter.load(path, class_names, device=device)
