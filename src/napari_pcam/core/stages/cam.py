"""PCAM training: CAMs learnt from image-level labels plus clicked points (McEver & Manjunath, section 3.1).

Loss ``L = multilabel_soft_margin(logits, labels) + alpha * L_pt`` where ``L_pt`` compares the class
activation maps, upsampled bilinearly to the crop size and divided by each class's spatial max, with the
clicked points by mean squared error: a point is 1 for its own class and 0 for every other class present
(background clicks are 0 for every class); averaged over points, then over the classes present in the
image, then over images. ``alpha = 0`` gives the plain CAM of Zhou et al. / IRNet (the paper's Table 1).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Generator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..checkpoints import load_checkpoint, save_checkpoint
from ..config import CamConfig, RuntimeConfig, from_dict, to_dict
from ..data.images import ImageStack, image_to_tensor
from ..data.lazy import LazySequence
from ..data.points import PointAnnotations
from ..data.transforms import IGNORE, Sample, augment
from ..device import autocast, resolve_device
from ..errors import CheckpointError, DataError
from ..models.cam import CamNet
from ..progress import Progress

EPS = 1e-5


@dataclass
class TrainedCam:
    """A trained PCAM classifier with what is needed to use it again."""

    model: CamNet
    config: CamConfig
    class_names: tuple[str, ...]

    def save(self, path) -> None:
        """Write a 'pcam' checkpoint atomically."""
        save_checkpoint(
            path,
            kind="pcam",
            config=to_dict(self.config),
            class_names=self.class_names,
            in_channels=self.model.backbone.in_channels,
            state_dict=self.model.state_dict(),
        )

    @classmethod
    def load(cls, path, class_names: Sequence[str] | None = None) -> "TrainedCam":
        """Read a 'pcam' checkpoint (weights are not downloaded: the stored state replaces them)."""
        data = load_checkpoint(path, kind="pcam", class_names=class_names)
        config = from_dict(CamConfig, data["config"])
        model = CamNet(
            backbone=config.backbone,
            weights="none",
            in_channels=data["in_channels"],
            num_classes=len(data["class_names"]) - 1,
        )
        _load_state(model, data["state_dict"], pretrained=config.weights != "none", path=path)
        return cls(model, config, tuple(data["class_names"]))


def _load_state(model: CamNet, state: dict, *, pretrained: bool, path) -> None:
    if pretrained:  # rebuild the frozen parts exactly as they were trained
        model.backbone.pretrained = True
        model.backbone.freeze_stages()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit its declared network (encoder {model.backbone.name}): {exc}"
        ) from exc


def point_loss(
    maps: torch.Tensor,
    points: Sequence[tuple[torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    *,
    size: tuple[int, int],
    detach_max: bool = False,
) -> torch.Tensor:
    """The PCAM point loss (paper Eq. 3-5).

    Args:
        maps: float B x K x h x w class activation maps (after ReLU).
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
    losses = []
    for b, (yx, cls) in enumerate(points):
        present = torch.nonzero(labels[b] > 0).flatten()
        if len(yx) == 0 or len(present) == 0:
            continue
        values = up[b][present][:, yx[:, 0], yx[:, 1]] / (peak[b, present, None] + EPS)  # (Kp, P)
        target = (cls[None, :] == (present[:, None] + 1)).to(values.dtype)
        losses.append(((values - target) ** 2).mean(dim=1).mean())
    if not losses:
        return maps.sum() * 0.0
    return torch.stack(losses).mean()


def _mask_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(mask, np.int64))


class PointCropDataset(torch.utils.data.Dataset):
    """Randomly rescaled, cropped and flipped training images with their points (and masks in 'all' mode)."""

    def __init__(self, tensors, points, labels, masks, config: CamConfig, seed: int):
        self.tensors, self.points, self.labels, self.masks = tensors, points, labels, masks
        self.config, self.seed, self.epoch = config, seed, 0

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
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


class RankBatchSampler(torch.utils.data.Sampler):
    """Shuffled batches of ``batch`` indices (the last incomplete one dropped), each cut to this rank's share.

    Every rank shuffles with the same generator, so the ranks together see exactly the batches of a single
    process (whose share is the whole batch); with the per-item augmentation seeds of the dataset the
    crops are the same too.
    """

    def __init__(self, n: int, batch: int, generator: torch.Generator):
        self.n, self.batch, self.generator = n, batch, generator

    def __len__(self) -> int:
        return self.n // self.batch

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for b in range(len(self)):
            yield distributed.rank_slice(order[b * self.batch : (b + 1) * self.batch])


def _collate(batch):
    images = torch.stack([b[0] for b in batch])
    labels = torch.stack([b[1] for b in batch])
    return images, labels, [(b[2], b[3]) for b in batch]


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
    dataset = PointCropDataset(  # images and masks are converted per crop (in the loader's workers, if any)
        LazySequence(images.images, image_to_tensor, used),
        [points.for_image(i) for i in used],
        labels[used],
        LazySequence(masks, _mask_tensor, used) if masks is not None else None,
        config,
        runtime.seed,
    )
    world = distributed.info().world_size
    batch = distributed.global_batch(min(config.batch_size, len(dataset)))
    if len(dataset) < batch:
        raise DataError(f"{len(dataset)} annotated images cannot fill a batch of {batch} over {world} processes; "
                        "annotate more images or start fewer processes.")
    sampler = RankBatchSampler(len(dataset), batch, torch.Generator().manual_seed(runtime.seed))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=_collate,
        num_workers=runtime.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(runtime.seed),  # worker seeds only; the order is the sampler's
    )
    total = max(config.epochs * len(loader), config.min_steps)
    backbone_params, head_params = model.param_groups()
    groups = [{"params": head_params, "lr": config.lr_classifier}]
    if backbone_params:
        groups.insert(0, {"params": backbone_params, "lr": config.lr_backbone})
    optimizer = torch.optim.SGD(groups, momentum=config.momentum, weight_decay=config.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scaler = torch.amp.GradScaler("cuda", enabled=runtime.amp and device.type == "cuda")
    model.train()
    net = distributed.wrap(model, device)  # DistributedDataParallel under torchrun, the model itself otherwise
    step, epoch, start = 0, 0, time.perf_counter()
    while step < total:
        dataset.epoch = epoch
        for images_b, labels_b, pts in loader:
            step += 1
            for g, lr0 in zip(optimizer.param_groups, base_lrs):  # poly schedule, as IRNet
                g["lr"] = lr0 * (1 - (step - 1) / total) ** 0.9
            images_b = images_b.to(device, non_blocking=True)
            labels_b = labels_b.to(device, non_blocking=True)
            pts = [(yx.to(device), c.to(device)) for yx, c in pts]
            with autocast(device, runtime.amp):
                logits, raw = net(images_b)
            cls_loss = F.multilabel_soft_margin_loss(logits.float(), labels_b)
            pt_loss = point_loss(
                F.relu(raw.float()), pts, labels_b, size=images_b.shape[2:], detach_max=config.detach_max
            )
            loss = cls_loss + config.alpha * pt_loss if config.alpha > 0 else cls_loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            elapsed = time.perf_counter() - start
            yield Progress(
                "pcam",
                step,
                total,
                loss=float(loss.detach()),
                metrics={
                    "cls_loss": float(cls_loss.detach()),
                    "point_loss": float(pt_loss.detach()),
                    "lr": optimizer.param_groups[-1]["lr"],
                    "images_per_s": step * images_b.shape[0] * world / max(elapsed, 1e-9),
                },
            )
            if not math.isfinite(float(loss.detach())):
                raise DataError(f"training diverged at step {step} (loss {float(loss.detach())}); lower the learning rates.")
            if step >= total:
                break
        epoch += 1
    model.eval()
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
        if init.model.backbone.in_channels != images.channels:
            raise DataError(
                f"cannot fine-tune: the model expects {init.model.backbone.in_channels}-channel images, "
                f"these have {images.channels}."
            )
        return init.model
    return CamNet(
        backbone=config.backbone, weights=config.weights, in_channels=images.channels, num_classes=points.num_classes
    )
