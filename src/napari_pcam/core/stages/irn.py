"""Training IRNet's boundary and displacement branches on labels mined from PCAMs (paper section 3.2;
IRNet: Ahn et al., "Weakly Supervised Learning of Instance Segmentation with Inter-pixel Relations",
CVPR 2019), and saving / loading the trained network.

Losses (IRNet's ``AffinityDisplacementLoss``): with ``aff = 1 - max(boundary)`` along each pair's path,
``-log(aff)`` on positive pairs (background-background and foreground-foreground pairs averaged
separately, half weight each), ``-log(1 - aff)`` on negative pairs; the displacement of foreground pairs
must differ by the pair offset (both pixels point at one centroid) and of background pairs by zero.
Total = (positive + negative) / 2 + (displacement fg + bg) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..config import AffinityConfig, IrnConfig, from_dict
from ..data.cams import CamMaps
from ..data.crops import crop_loader
from ..data.images import ImageStack, image_to_tensor
from ..data.lazy import LazySequence
from ..device import resolve_device
from ..errors import CheckpointError, DataError, MissingStageError
from ..models.irn import IrnNet
from ..progress import Progress
from ..training import TrainedNetwork, fit, load_state, planned_steps, shuffled_batches
from .affinity import IGNORE, mine_all
from .pairs import pair_difference, pair_displacement_target, pair_labels, path_affinity

EPS = 1e-5


@dataclass
class TrainedIrn(TrainedNetwork):
    """A trained IRNet with the config it was trained with and its loss history (an 'irn' checkpoint)."""

    kind: ClassVar[str] = "irn"
    network: ClassVar[str] = "IRNet"
    model: IrnNet
    config: IrnConfig
    losses: list[float] = field(default_factory=list)

    def checkpoint_fields(self) -> dict:
        m = self.model
        return {"class_names": [],  # IRNet is class-agnostic
                "in_channels": m.backbone.in_channels,
                "extra": {"displacement": m.has_displacement, "losses": [float(v) for v in self.losses]}}

    @classmethod
    def from_checkpoint(cls, data: dict, source: str) -> TrainedIrn:
        config = from_dict(IrnConfig, data["config"])
        model = IrnNet(
            backbone=config.backbone,
            weights="none",
            in_channels=int(data["in_channels"]),
            displacement=bool(data["extra"]["displacement"]),
            freeze_backbone=config.freeze_backbone,
        )
        load_state(model, data["state_dict"], source, f"an IRNet with encoder {config.backbone}")
        return cls(model.eval(), config, list(data["extra"].get("losses", [])))

    @classmethod
    def load(cls, path: str | Path) -> TrainedIrn:
        """Read a checkpoint written by :meth:`save` (on the CPU, ``weights_only=True``).

        Raises:
            MissingStageError: the file does not exist (train IRNet first).
            CheckpointError: unreadable file, another kind or format version, or mismatching weights.
        """
        if not Path(path).is_file():
            raise MissingStageError(
                f"no trained IRNet at {str(path)!r}: train it first (napari-pcam refine trains one, or "
                "napari-pcam run --until irn)."
            )
        return super().load(path)


def save_irn(trained: TrainedIrn, path: str | Path) -> None:
    """Write ``trained`` as an 'irn' checkpoint atomically (:meth:`TrainedIrn.save`)."""
    trained.save(path)


def load_irn(path: str | Path) -> TrainedIrn:
    """Read an 'irn' checkpoint (:meth:`TrainedIrn.load`)."""
    return TrainedIrn.load(path)


def irn_loss(
    edge: torch.Tensor, disp: torch.Tensor | None, labels: torch.Tensor, radius: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """IRNet's loss for a batch.

    Args:
        edge: float B x 1 x h x w boundary logits.
        disp: float B x 2 x h x w displacement, or None.
        labels: int64 B x h x w stride-4 labels (0 background, 255 ignored).
        radius: Pair search radius.

    Returns:
        The scalar loss and its parts as floats.
    """
    bg_pos, fg_pos, neg = pair_labels(labels, radius)  # B x D x h x w
    aff = path_affinity(torch.sigmoid(edge[:, 0]), radius)
    pos_loss = -torch.log(aff + EPS)
    bg = (bg_pos * pos_loss).sum() / (bg_pos.sum() + EPS)
    fg = (fg_pos * pos_loss).sum() / (fg_pos.sum() + EPS)
    neg_loss = (neg * -torch.log(1.0 + EPS - aff)).sum() / (neg.sum() + EPS)
    total = (bg / 2 + fg / 2 + neg_loss) / 2
    parts = {"bg_pos": bg.item(), "fg_pos": fg.item(), "neg": neg_loss.item()}
    if disp is not None:
        diff = pair_difference(disp, radius)  # B x 2 x D x h x w
        target = pair_displacement_target(radius).to(disp).t().reshape(1, 2, -1, 1, 1)
        dp_fg = ((diff - target).abs() * fg_pos.unsqueeze(1)).sum() / (2 * fg_pos.sum() + EPS)
        dp_bg = (diff.abs() * bg_pos.unsqueeze(1)).sum() / (2 * bg_pos.sum() + EPS)
        total = total + (dp_fg + dp_bg) / 2
        parts.update(dp_fg=dp_fg.item(), dp_bg=dp_bg.item())
    return total, parts


def build_irn(config: IrnConfig, in_channels: int, init_backbone_state: dict | None = None) -> IrnNet:
    """The network for ``config``; ``weights='same'`` needs the trained PCAM backbone's state dict.

    Raises:
        MissingStageError: ``weights='same'`` without ``init_backbone_state``.
        CheckpointError: ``init_backbone_state`` does not fit the backbone.
    """
    if config.weights == "same" and init_backbone_state is None:
        raise MissingStageError(
            "irn.weights='same' reuses the trained PCAM backbone: train the PCAM stage first "
            "(napari-pcam run --until pcam) or set irn.weights to 'imagenet' or 'none'."
        )
    weights = "none" if config.weights == "same" else config.weights
    model = IrnNet(
        backbone=config.backbone,
        weights=weights,
        in_channels=in_channels,
        displacement=config.displacement,
        freeze_backbone=config.freeze_backbone,
    )
    if init_backbone_state is not None:
        state = {k.removeprefix("backbone."): v for k, v in init_backbone_state.items()}
        try:
            model.backbone.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"the PCAM backbone does not fit irn.backbone={config.backbone!r}: {exc}") from exc
    return model


def _augment(
    img: torch.Tensor, label: np.ndarray, config: IrnConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rescale, flip and crop of an image and its label map together.

    Args:
        img: float32 C x H x W normalised image.
        label: uint8 H x W mined labels.

    Returns:
        float32 C x S x S crop and int64 S/4 x S/4 stride-4 labels (S = crop size; padding is ignored).
    """
    lab = torch.from_numpy(label.astype(np.float32))[None, None]
    s = rng.uniform(*config.scale_range)
    h, w = img.shape[1:]
    size = (max(1, round(h * s)), max(1, round(w * s)))
    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
    lab = F.interpolate(lab, size=size, mode="nearest-exact")[0, 0]  # pixel centres, like bilinear
    if config.flip and rng.random() < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
    crop = config.crop_size
    ph, pw = max(0, crop - size[0]), max(0, crop - size[1])
    img = F.pad(img, (0, pw, 0, ph), value=0.0)
    lab = F.pad(lab, (0, pw, 0, ph), value=float(IGNORE))
    y0 = int(rng.integers(0, img.shape[1] - crop + 1))
    x0 = int(rng.integers(0, img.shape[2] - crop + 1))
    img = img[:, y0 : y0 + crop, x0 : x0 + crop]
    lab = lab[y0 : y0 + crop, x0 : x0 + crop][2::4, 2::4]
    return img.contiguous(), lab.long()


class _IrnCrop:
    """One augmented crop of image ``i`` and its mined labels (picklable, for loader workers)."""

    def __init__(self, tensors: Sequence[torch.Tensor], labels: Sequence[np.ndarray], config: IrnConfig):
        self.tensors, self.labels, self.config = tensors, labels, config

    def __call__(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return _augment(self.tensors[i], self.labels[i], self.config, rng)


def _mine_all(images: ImageStack, cams: Sequence[CamMaps], affinity: AffinityConfig, workers: int) -> list[np.ndarray]:
    if len(cams) != len(images):
        raise DataError(f"{len(cams)} CAM sets for {len(images)} images; compute CAMs for every image.")

    def checked():  # one read of every image and CAM set (they may live on disk)
        for name, img, cam in zip(images.names, images.images, cams):
            if cam.shape != img.shape[:2]:
                raise DataError(f"the CAMs of {name!r} are {cam.shape}, the image is {img.shape[:2]}; "
                                "recompute them.")
            yield cam, img

    labels = list(mine_all(checked(), affinity, workers=workers))
    if all(np.all(lab == IGNORE) for lab in labels):
        raise DataError(
            "no confident pixels in any image (every label is ignored): lower affinity.fg_threshold or raise "
            "affinity.bg_threshold, or check the CAMs."
        )
    return labels


def train_irn(
    images: ImageStack,
    cams: Sequence[CamMaps],
    config: IrnConfig,
    affinity: AffinityConfig,
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    init_backbone_state: dict | None = None,
    num_workers: int = 0,
    crf_workers: int = 0,
    amp: bool = True,
) -> Generator[Progress, None, TrainedIrn]:
    """Train IRNet; yields one :class:`Progress` per optimiser step, returns the trained network.

    Args:
        images: Training images.
        cams: One :class:`CamMaps` per image (the PCAM stage's output).
        config: Network and optimiser settings.
        affinity: Thresholds for mining the confident labels.
        device: Torch device or its name ('auto', 'cpu', 'cuda', ...).
        seed: Seed of the initialisation and the augmentation.
        init_backbone_state: State dict of the trained PCAM ``Backbone`` (keys optionally prefixed
            ``backbone.``); required with ``config.weights == 'same'``.
        num_workers: DataLoader worker processes making the crops (0 = this process); same crops either way.
        crf_workers: Processes running the dense CRF of the mined labels (0 = this process); same labels.
        amp: Mixed precision on CUDA.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    labels = _mine_all(images, cams, affinity, crf_workers)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_irn(config, images.channels, init_backbone_state).to(device)
    params = model.branch_parameters() if config.freeze_backbone else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    tensors = LazySequence(images.images, image_to_tensor)  # per crop: lazily read datasets stay on disk
    size = distributed.global_batch(min(config.batch_size, len(images)))  # the global batch under torchrun
    total = planned_steps(config, config.epochs * math.ceil(len(images) / size))
    plan = shuffled_batches(len(images), size, total, rng)
    loader = crop_loader(_IrnCrop(tensors, labels, config), plan, seed, num_workers=num_workers,
                         pin_memory=device.type == "cuda")
    losses = yield from fit("irn", model, opt, loader, total, _loss(config.radius), device=device, amp=amp,
                            lr_settings="irn.lr")
    if config.displacement:
        yield from _set_mean_displacement(model, tensors, device)
    model.eval()
    return TrainedIrn(model.cpu(), config, losses)


def _loss(radius: int):
    def loss_fn(outputs, batch):
        edge, disp = outputs
        return irn_loss(edge.float(), None if disp is None else disp.float(), batch[1], radius)

    return loss_fn


def _set_mean_displacement(model: IrnNet, tensors: Sequence[torch.Tensor], device) -> Generator[Progress, None, None]:
    """IRNet's MeanShift: store the mean displacement over the training images."""
    model.eval()
    means = []
    model.dp_mean.zero_()
    with torch.no_grad():
        for i, x in enumerate(tensors):
            _, disp = model(x[None].to(device))
            means.append(disp.mean(dim=(0, 2, 3)))
            yield Progress("irn_displacement", i + 1, len(tensors), message="mean displacement")
        model.dp_mean.copy_(torch.stack(means).mean(0))
