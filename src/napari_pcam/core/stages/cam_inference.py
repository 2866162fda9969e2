"""Computing CAMs for images: multi-scale + flip, per-class max normalisation, tiled for large images.

Follows IRNet's ``make_cam`` (Ahn et al., CVPR 2019): for each scale (1.0, 0.5, 1.5, 2.0) and its
horizontal flip the ReLU maps are resized to the image size (and to stride 4) and summed, then each class
is divided by its spatial max (+1e-5). Images larger than the tile size at a given scale are processed in
overlapping tiles aligned to the output stride, so memory stays bounded whatever the image size.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import CamInferenceConfig
from ..data.cams import CamMaps
from ..data.images import image_to_tensor
from ..device import autocast
from ..models.cam import CamNet

STRIDE = 16


@torch.no_grad()
def stride16_cams(model: CamNet, x: torch.Tensor, config: CamInferenceConfig, amp: bool = True) -> torch.Tensor:
    """ReLU CAMs of one image, tiled when larger than ``config.tile_size``.

    Args:
        model: Trained classifier in eval mode.
        x: float32 1 x C x H x W on the model's device.

    Returns:
        float32 K x ceil(H/16) x ceil(W/16).
    """
    h, w = x.shape[2:]
    tile = config.tile_size
    if h <= tile and w <= tile:
        with autocast(x.device, amp):
            return model.cams(x)[0].float()
    gh, gw = math.ceil(h / STRIDE), math.ceil(w / STRIDE)
    out = x.new_zeros((model.classifier.out_channels, gh, gw))
    weight = x.new_zeros((1, gh, gw))
    margin = config.tile_overlap // 2 // STRIDE
    for ys, ye, y_first, y_last in _tiles(h, tile, config.tile_overlap):
        for xs, xe, x_first, x_last in _tiles(w, tile, config.tile_overlap):
            with autocast(x.device, amp):
                m = model.cams(x[:, :, ys:ye, xs:xe])[0].float()
            ty, tx = ys // STRIDE, xs // STRIDE
            a0 = 0 if y_first else margin
            a1 = m.shape[1] if y_last else m.shape[1] - margin
            b0 = 0 if x_first else margin
            b1 = m.shape[2] if x_last else m.shape[2] - margin
            out[:, ty + a0 : ty + a1, tx + b0 : tx + b1] += m[:, a0:a1, b0:b1]
            weight[:, ty + a0 : ty + a1, tx + b0 : tx + b1] += 1
    return out / weight.clamp(min=1)


def _tiles(size: int, tile: int, overlap: int) -> list[tuple[int, int, bool, bool]]:
    """(start, end, is_first, is_last) windows along one axis; starts are multiples of the stride."""
    if size <= tile:
        return [(0, size, True, True)]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    last = ((size - tile) // STRIDE) * STRIDE
    if not starts or starts[-1] < last:
        starts.append(last)
    return [(s, min(s + tile, size), i == 0, i == len(starts) - 1) for i, s in enumerate(starts)]


@torch.no_grad()
def compute_cams(
    model: CamNet,
    image: np.ndarray,
    config: CamInferenceConfig = CamInferenceConfig(),
    *,
    keys: Sequence[int] | None = None,
    amp: bool = True,
) -> CamMaps:
    """Multi-scale, flipped, max-normalised CAMs of one ``H x W x C`` image.

    Args:
        model: Trained classifier (its device is used).
        image: The image.
        config: Scales, flip, tiling.
        keys: Class ids (1..K) to keep; all classes when None. A model with a background map adds it as
            class 0 (the first map). Empty (an image with background clicks only, a held-out mask with no
            foreground class): no maps, and the network is not run, unless the model has a background map.
        amp: Mixed precision on CUDA.
    """
    device = next(model.parameters()).device
    model.eval()
    x = image_to_tensor(np.asarray(image))[None].to(device)  # a dask view of a layer is read here, whole
    h, w = x.shape[2:]
    low_size = (math.ceil(h / 4), math.ceil(w / 4))
    keys = np.arange(1, model.num_classes + 1) if keys is None else np.asarray(sorted(keys), np.int64)
    channels = keys - 1
    if model.background:  # its map is the classifier's last row, class 0
        keys, channels = np.concatenate([[0], keys]), np.concatenate([[model.num_classes], channels])
    if not len(keys):  # no class to map: every pixel is background, and the network need not run
        return CamMaps(keys, np.zeros((0, h, w), np.float32), np.zeros((0, *low_size), np.float32))
    idx = torch.as_tensor(channels, device=device)
    high = x.new_zeros((len(keys), h, w))
    low = x.new_zeros((len(keys), *low_size))
    for scale in config.scales:
        xs = x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False,
                                                  recompute_scale_factor=False)
        if min(xs.shape[2:]) < STRIDE:
            continue
        maps = stride16_cams(model, xs, config, amp)[idx]
        if config.flip:
            maps = maps + stride16_cams(model, xs.flip(-1), config, amp)[idx].flip(-1)
        high += F.interpolate(maps[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        low += F.interpolate(maps[None], size=low_size, mode="bilinear", align_corners=False)[0]
    high /= high.flatten(1).amax(1).view(-1, 1, 1) + 1e-5
    low /= low.flatten(1).amax(1).view(-1, 1, 1) + 1e-5
    return CamMaps(keys.astype(np.int64), high.cpu().numpy(), low.cpu().numpy())
