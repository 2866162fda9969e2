"""Refinement of a whole image set: the random walk's semantic labels, or IRNet's instance masks, per image.

The dataset-level runner above the per-image functions of :mod:`.random_walk` (semantic labels,
:func:`~napari_pcam.core.stages.random_walk.refine_image`) and :mod:`.instances` (instance masks, which
build on the random walk); it loads the network once, loops and yields one :class:`Progress` per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Generator, Sequence

import numpy as np
import torch

from ..config import RandomWalkConfig
from ..data.cams import CamMaps
from ..data.images import ImageStack
from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..models.irn import IrnNet
from ..progress import Progress
from .instances import refine_instances
from .irn import TrainedIrn, load_irn
from .random_walk import refine_image, walk_scores


def refine_images(
    images: ImageStack,
    cams: Sequence[CamMaps],
    irn_model_or_checkpoint: IrnNet | TrainedIrn | str | Path,
    config: RandomWalkConfig,
    *,
    device: torch.device | str = "cpu",
) -> Generator[Progress, None, list[np.ndarray]]:
    """Refine every image; yields one :class:`Progress` per image (preview = its labels).

    Args:
        images: The images.
        cams: One :class:`CamMaps` per image.
        irn_model_or_checkpoint: A trained :class:`IrnNet`, a ``TrainedIrn``, or a checkpoint path.
        config: Random-walk settings; with ``config.instances`` the results are instance label images.
        device: Torch device or its name.

    Returns:
        One array per image: uint8 (H, W) class ids; with ``config.instances`` int32 (H, W) instance ids
        (0 = background; the class of each instance is the semantic label under it, see
        :func:`~napari_pcam.core.stages.instances.refine_instances`).
    """
    model, device = _prepare(images, cams, irn_model_or_checkpoint, config, device)
    out = []
    for i, (name, img, cam) in enumerate(zip(images.names, images.images, cams)):
        if config.instances:
            result = refine_instances(img, cam, model, config=config, device=device)[0]
        else:
            result = refine_image(img, cam, model, config=config, device=device)
        out.append(result)
        yield Progress("refine", i + 1, len(images), message=name, preview=result)
    return out


def walk_images(
    images: ImageStack,
    cams: Sequence[CamMaps],
    irn_model_or_checkpoint: IrnNet | TrainedIrn | str | Path,
    config: RandomWalkConfig,
    *,
    device: torch.device | str = "cpu",
) -> Generator[Progress, None, list[np.ndarray]]:
    """The random walk's scores of every image (:func:`~.random_walk.walk_scores`), for choosing the background
    threshold before labelling; yields one :class:`Progress` per image. Arguments as :func:`refine_images`.

    Returns:
        float32 (K, ceil(H/4), ceil(W/4)) per image, one map per class of its CAMs.
    """
    model, device = _prepare(images, cams, irn_model_or_checkpoint, config, device)
    out = []
    for i, (name, img, cam) in enumerate(zip(images.names, images.images, cams)):
        out.append(walk_scores(img, cam, model, config=config, device=device).cpu().numpy())
        yield Progress("refine", i + 1, len(images), message=name)
    return out


def _prepare(images: ImageStack, cams: Sequence[CamMaps], model, config: RandomWalkConfig, device):
    """The checked IRNet on its device, and the device."""
    if len(cams) != len(images):
        raise DataError(f"{len(cams)} CAM sets for {len(images)} images; compute CAMs for every image.")
    if isinstance(model, (str, Path)):
        model = load_irn(model).model
    elif isinstance(model, TrainedIrn):
        model = model.model
    if config.instances and not model.has_displacement:
        raise ConfigError("random_walk.instances=True needs an IRNet trained with irn.displacement=True.")
    device = resolve_device(device) if isinstance(device, str) else device
    return model.to(device), device
