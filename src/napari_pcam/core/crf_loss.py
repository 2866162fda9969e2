"""A CRF loss on the network's own predictions: neighbouring pixels of similar colour should share a label.

The gated CRF loss of Obukhov, Georgoulis, Dai & Van Gool, "Gated CRF Loss for Weakly Supervised Semantic
Image Segmentation" (arXiv 1906.04651, 2019), a local form of the dense CRF loss of Tang, Djelouah, Perazzi,
Boykov & Schroers, "On Regularized Losses for Weakly-supervised CNN Segmentation" (ECCV 2018): for every
pixel ``i`` and every other pixel ``j`` in a window around it,

    loss = sum_i sum_j k(i, j) * (1 - sum_c p_i(c) p_j(c)) / (number of pixels i),
    k(i, j) = exp(-|pos_i - pos_j|^2 / (2 sigma_xy^2) - |rgb_i - rgb_j|^2 / (2 sigma_rgb^2)),

where ``p`` are the softmax scores and ``1 - sum_c p_i(c) p_j(c)`` is the probability that the two pixels
get different labels. Where clicks or confident pseudo labels say nothing, it carries their labels along
regions of similar colour and stops at colour edges, which is what the dense CRF does to predictions at
inference, here learnt by the network. Padding pixels take no part (``valid``).

The scores and the image are averaged down by ``downscale`` first (the loss's cost grows with the window's
area, not with the image: a 160 px crop at factor 2 is 80 x 80 pixels x 120 neighbours).

The colour term reads each crop stretched between its own 0.5 and 99.5 percentiles (over all channels and
unpadded pixels), so ``sigma_rgb`` is a fraction of the crop's contrast, not of the file's value range: a dim
fluorescence image whose nuclei are 0.1 above its background then has edges as strong as a bright one. On
dsb2018 (point-only DeepLabv3+, 300 steps, weight 0.01) held-out mIoU was 64.0 without the loss, 62.1 with it
on the unstretched crops and 74.2 with it on stretched crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .normalisation import IMAGENET_MEAN, IMAGENET_STD


def image_from_tensor(x: torch.Tensor) -> torch.Tensor:
    """The data pipeline's normalised float32 B x C x H x W -> the image scaled to [0, 1] (before ImageNet
    normalisation; see :func:`napari_pcam.core.data.images.image_to_tensor`)."""
    c = x.shape[1]
    mean = torch.tensor(IMAGENET_MEAN if c == 3 else [sum(IMAGENET_MEAN) / 3] * c, dtype=x.dtype, device=x.device)
    std = torch.tensor(IMAGENET_STD if c == 3 else [sum(IMAGENET_STD) / 3] * c, dtype=x.dtype, device=x.device)
    return x * std.view(1, c, 1, 1) + mean.view(1, c, 1, 1)


STRETCH_PERCENTILES = (0.005, 0.995)


def stretch_contrast(image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """float B x C x h x w -> each crop scaled to [0, 1] between its 0.5 and 99.5 percentiles over all channels
    and the pixels where ``valid`` (float B x 1 x h x w, 1 = a real pixel) is set."""
    b = image.shape[0]
    values = image.masked_fill(valid == 0, float("nan")).flatten(1)
    lo = torch.nanquantile(values, STRETCH_PERCENTILES[0], dim=1).nan_to_num(0.0).view(b, 1, 1, 1)
    hi = torch.nanquantile(values, STRETCH_PERCENTILES[1], dim=1).nan_to_num(1.0).view(b, 1, 1, 1)
    return ((image - lo) / (hi - lo).clamp(min=1e-3)).clamp(0.0, 1.0)


def _windows(t: torch.Tensor, radius: int) -> torch.Tensor:
    """B x C x h x w -> B x C x (2r+1)^2 x (h*w): every pixel's window (zero outside the image)."""
    b, c, h, w = t.shape
    k = 2 * radius + 1
    return F.unfold(t, k, padding=radius).view(b, c, k * k, h * w)


def gated_crf_loss(
    logits: torch.Tensor,
    image: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    downscale: int = 2,
    radius: int = 5,
    sigma_xy: float = 6.0,
    sigma_rgb: float = 0.1,
) -> torch.Tensor:
    """The gated CRF loss (module docstring) of one batch.

    Args:
        logits: float B x K x H x W class scores.
        image: float B x C x H x W the same crops, scaled to [0, 1] (:func:`image_from_tensor`).
        valid: bool B x H x W, False at padding (no pairs there); None = every pixel.
        downscale: Average-pool scores and image by this factor first.
        radius: Window radius in downscaled pixels (the paper's 5).
        sigma_xy: Spatial bandwidth in downscaled pixels.
        sigma_rgb: Colour bandwidth as a fraction of each crop's contrast (:func:`stretch_contrast`).

    Returns:
        Scalar loss, 0 when no pixel is valid.
    """
    b, k, h, w = logits.shape
    size = (max(1, h // downscale), max(1, w // downscale))
    probs = F.adaptive_avg_pool2d(logits.float().softmax(1), size)
    inside = torch.ones(b, 1, *size, device=logits.device) if valid is None else (
        F.adaptive_max_pool2d(valid[:, None].float(), size))
    img = stretch_contrast(F.adaptive_avg_pool2d(image.float(), size), inside)
    ys, xs = torch.meshgrid(torch.arange(size[0], dtype=img.dtype, device=img.device),
                            torch.arange(size[1], dtype=img.dtype, device=img.device), indexing="ij")
    features = torch.cat([torch.stack([ys, xs])[None].expand(b, -1, -1, -1) / sigma_xy, img / sigma_rgb], 1)
    n = size[0] * size[1]
    dist = ((_windows(features, radius) - features.view(b, -1, 1, n)) ** 2).sum(1)  # B x window x n
    kernel = torch.exp(-0.5 * dist)
    kernel = kernel * _windows(inside, radius)[:, 0] * inside.view(b, 1, n)  # zero-padded windows: no pairs
    kernel[:, kernel.shape[1] // 2] = 0.0  # a pixel with itself
    same = (_windows(probs, radius) * probs.view(b, k, 1, n)).sum(1)
    return (kernel * (1.0 - same)).sum() / inside.sum().clamp(min=1.0)
