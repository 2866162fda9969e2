"""PCAM training: CAMs learnt from image-level labels plus clicked points (McEver & Manjunath, section 3.1).

Loss ``L = multilabel_soft_margin(logits, labels) + alpha * L_pt`` where ``L_pt`` compares the class
activation maps, upsampled bilinearly to the crop size and divided by each class's spatial max, with the
clicked points by mean squared error: a point is 1 for its own class and 0 for every other class present
(background clicks are 0 for every class); averaged over points, then over the classes present in the
image, then over images. ``alpha = 0`` gives the plain CAM of Zhou et al. / IRNet (the paper's Table 1).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..config import CamConfig, RuntimeConfig, from_dict
from ..data.crops import seeded_loader
from ..data.images import ImageStack, image_to_tensor
from ..data.lazy import LazySequence
from ..data.points import PointAnnotations
from ..data.transforms import IGNORE, Sample, augment
from ..device import resolve_device
from ..errors import DataError
from ..models.cam import CamNet
from ..progress import Progress
from ..training import TrainedNetwork, epoch_keys, fit, load_state, planned_steps

EPS = 1e-5


@dataclass
class TrainedCam(TrainedNetwork):
    """A trained PCAM classifier with what is needed to use it again (a 'pcam' checkpoint)."""

    kind: ClassVar[str] = "pcam"
    network: ClassVar[str] = "PCAM network"
    model: CamNet
    config: CamConfig
    class_names: tuple[str, ...]

    def checkpoint_fields(self) -> dict:
        return {"class_names": self.class_names, "in_channels": self.model.backbone.in_channels}

    @classmethod
    def from_checkpoint(cls, data: dict, source: str) -> TrainedCam:
        """The network of a 'pcam' checkpoint (weights are not downloaded: the stored state replaces them)."""
        config = from_dict(CamConfig, data["config"])
        model = CamNet(
            backbone=config.backbone,
            weights="none",
            in_channels=data["in_channels"],
            num_classes=len(data["class_names"]) - 1,
            background=config.background_map,
        )
        if config.weights != "none":  # rebuild the frozen parts exactly as they were trained
            model.backbone.pretrained = True
            model.backbone.freeze_stages()
        load_state(model, data["state_dict"], source, f"a PCAM network with encoder {model.backbone.name}")
        return cls(model, config, tuple(data["class_names"]))


def point_loss(
    maps: torch.Tensor,
    points: Sequence[tuple[torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    *,
    size: tuple[int, int],
    detach_max: bool = False,
) -> torch.Tensor:
    """The PCAM point loss (paper Eq. 3-5).

    With a background map (``maps`` has K + 1 channels, the last one background's) background is a class
    present in every image: a background click is 1 on that map and 0 on the others, every other click 0 on it.

    Args:
        maps: float B x K x h x w class activation maps (after ReLU), or B x (K + 1) with the background map.
        points: Per image (yx int64 (P, 2) pixel indices in the crop, cls int64 (P,) class ids, 0 = bg).
        labels: float B x K image-level labels (1 = class present).
        size: (H, W) of the crop the maps are upsampled to.
        detach_max: Treat the normalising max as a constant.

    Returns:
        Scalar loss; 0 (with a graph) when no image has both points and a present class.
    """
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    peak = up.flatten(2).amax(dim=2)
    if detach_max:
        peak = peak.detach()
    k = labels.shape[1]
    channel_class = torch.arange(1, maps.shape[1] + 1, device=maps.device)
    if maps.shape[1] == k + 1:  # the background map: class 0, present everywhere
        channel_class[k] = 0
        labels = torch.cat([labels, labels.new_ones((labels.shape[0], 1))], dim=1)
    losses = []
    for b, (yx, cls) in enumerate(points):
        present = torch.nonzero(labels[b] > 0).flatten()
        if len(yx) == 0 or len(present) == 0:
            continue
        values = up[b][present][:, yx[:, 0], yx[:, 1]] / (peak[b, present, None] + EPS)  # (Kp, P)
        target = (cls[None, :] == channel_class[present][:, None]).to(values.dtype)
        losses.append(((values - target) ** 2).mean(dim=1).mean())
    if not losses:
        return maps.sum() * 0.0
    return torch.stack(losses).mean()


def _mask_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(mask, np.int64))


class _PointCrop:
    """One randomly rescaled, cropped and flipped training image with its points (and mask in 'all' mode):
    (image, labels, yx, cls); picklable, for loader workers."""

    def __init__(self, tensors, points, labels, masks, config: CamConfig):
        self.tensors, self.points, self.labels, self.masks, self.config = tensors, points, labels, masks, config

    def __call__(self, i: int, rng: np.random.Generator):
        yx, cls = self.points[i]
        mask = self.masks[i] if self.masks is not None else None
        s = augment(
            Sample(self.tensors[i], yx, cls, mask),
            size=self.config.crop_size,
            scale_range=self.config.scale_range,
            flip=self.config.flip,
            rng=rng,
        )
        if s.mask is not None:  # 'all' mode: every known mask pixel is a point
            ys, xs = torch.nonzero(s.mask != IGNORE, as_tuple=True)
            pyx, pcls = torch.stack([ys, xs], 1), s.mask[ys, xs]
        else:
            size = self.config.crop_size
            pyx = torch.from_numpy(np.clip(np.rint(s.yx), 0, size - 1).astype(np.int64)).reshape(-1, 2)
            pcls = torch.from_numpy(s.cls.astype(np.int64))
        return s.image, torch.from_numpy(self.labels[i]), pyx, pcls


def _collate(batch):
    images = torch.stack([b[0] for b in batch])
    labels = torch.stack([b[1] for b in batch])
    return images, labels, [(b[2], b[3]) for b in batch]


def _loss(config: CamConfig):
    def loss_fn(outputs, batch):
        logits, raw = outputs
        images, labels, pts = batch
        # image-level labels are the foreground's: a background map learns from the background clicks only
        cls_loss = F.multilabel_soft_margin_loss(logits[:, : labels.shape[1]].float(), labels)
        pt_loss = point_loss(F.relu(raw.float()), pts, labels, size=images.shape[2:], detach_max=config.detach_max)
        loss = cls_loss + config.alpha * pt_loss if config.alpha > 0 else cls_loss
        return loss, {"cls_loss": float(cls_loss.detach()), "point_loss": float(pt_loss.detach())}

    return loss_fn


def _optimizer(model: CamNet, config: CamConfig) -> torch.optim.SGD:
    backbone_params, head_params = model.param_groups()
    groups = [{"params": head_params, "lr": config.lr_classifier}]
    if backbone_params:
        groups.insert(0, {"params": backbone_params, "lr": config.lr_backbone})
    return torch.optim.SGD(groups, momentum=config.momentum, weight_decay=config.weight_decay)


def train_cam(
    images: ImageStack,
    points: PointAnnotations,
    config: CamConfig = CamConfig(),
    *,
    runtime: RuntimeConfig = RuntimeConfig(),
    masks: Sequence[np.ndarray] | None = None,
    init: TrainedCam | None = None,
) -> Generator[Progress, None, TrainedCam]:
    """Train the PCAM classifier; yields one :class:`Progress` per optimiser step.

    Args:
        images: Training images.
        points: Clicks (validated against the images first).
        config: Stage settings (alpha = 0 gives plain CAMs).
        runtime: Device, seed, mixed precision, data-loading workers.
        masks: Ground-truth label images: the points of ``point_mode='all'`` (PCAM-F); ignored in the
            'clicks' mode (runs pass masks for evaluation, and they must never leak into training).
        init: Start from this model (fine-tuning) instead of from the configured weights.

    Returns:
        The trained model (in eval mode, on the chosen device).
    """
    points.validate(images.shapes, images.names)
    if config.point_mode == "all" and masks is None:
        raise DataError("point_mode='all' (PCAM-F) uses every mask pixel as a point: give ground-truth masks.")
    device = resolve_device(runtime.device)
    torch.manual_seed(runtime.seed)
    labels = points.image_labels(len(images))
    masks = masks if config.point_mode == "all" else None
    used = [i for i in range(len(images)) if np.any(points.image == i) or masks is not None]
    model = _build_model(images, points, config, init).to(device)
    make = _PointCrop(  # images and masks are converted per crop (in the loader's workers, if any)
        LazySequence(images.images, image_to_tensor, used),
        [points.for_image(i) for i in used],
        labels[used],
        LazySequence(masks, _mask_tensor, used) if masks is not None else None,
        config,
    )
    world = distributed.info().world_size
    batch = distributed.global_batch(min(config.batch_size, len(used)))
    if len(used) < batch:
        raise DataError(f"{len(used)} annotated images cannot fill a batch of {batch} over {world} processes; "
                        "annotate more images or start fewer processes.")
    total = planned_steps(config, config.epochs * (len(used) // batch))
    keys = epoch_keys(len(used), batch, total, torch.Generator().manual_seed(runtime.seed))
    loader = seeded_loader(make, keys, runtime.seed, collate_fn=_collate, num_workers=runtime.num_workers,
                           pin_memory=device.type == "cuda")
    yield from fit("pcam", model, _optimizer(model, config), loader, total, _loss(config), device=device,
                   amp=runtime.amp, lr_settings="cam.lr_backbone, cam.lr_classifier", lr_group=-1)
    return TrainedCam(model, config, points.class_names)


def _build_model(images: ImageStack, points: PointAnnotations, config: CamConfig, init: TrainedCam | None) -> CamNet:
    if init is not None:
        if tuple(init.class_names) != tuple(points.class_names):
            raise DataError(
                f"cannot fine-tune: the model was trained for classes {list(init.class_names)}, the points declare "
                f"{list(points.class_names)}. Train from scratch or use the same classes."
            )
        if init.model.backbone.name != config.backbone:
            raise DataError(
                f"cannot fine-tune: the model was trained with encoder {init.model.backbone.name!r}, the settings ask "
                f"for {config.backbone!r}. Choose {init.model.backbone.name!r} or train from scratch."
            )
        if init.model.background != config.background_map:
            raise DataError(
                f"cannot fine-tune: the model was trained with cam.background_map={init.model.background}, the "
                f"settings ask for {config.background_map}. Use the same setting or train from scratch."
            )
        if init.model.backbone.in_channels != images.channels:
            raise DataError(
                f"cannot fine-tune: the model expects {init.model.backbone.in_channels}-channel images, "
                f"these have {images.channels}."
            )
        return init.model
    return CamNet(
        backbone=config.backbone, weights=config.weights, in_channels=images.channels, num_classes=points.num_classes,
        background=config.background_map,
    )
