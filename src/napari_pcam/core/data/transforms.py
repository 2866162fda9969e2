"""Random rescale, crop and flip that move the points (and an optional label map) with the image.

Coordinates are pixel centres at integers: rescaling by ``s`` maps ``p`` to ``(p + 0.5) * s - 0.5``.
Points that fall outside a crop are dropped for that step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = 255


@dataclass
class Sample:
    """One training example.

    Attributes:
        image: float32 C x H x W.
        yx: float64 (K, 2) point coordinates.
        cls: int64 (K,) point classes.
        mask: int64 H x W label map (255 = unknown) or None.
    """

    image: torch.Tensor
    yx: np.ndarray
    cls: np.ndarray
    mask: torch.Tensor | None = None


def rescale(s: Sample, scale: float) -> Sample:
    """Resize image (bilinear) and mask (nearest) by ``scale``; points follow."""
    if scale == 1.0:
        return s
    h, w = s.image.shape[1:]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = F.interpolate(s.image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    mask = None
    if s.mask is not None:
        mask = F.interpolate(s.mask[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].long()
    sy, sx = nh / h, nw / w
    yx = np.stack([(s.yx[:, 0] + 0.5) * sy - 0.5, (s.yx[:, 1] + 0.5) * sx - 0.5], axis=1) if len(s.yx) else s.yx
    return Sample(img, yx, s.cls, mask)


def hflip(s: Sample) -> Sample:
    """Mirror left-right; x -> W - 1 - x."""
    w = s.image.shape[2]
    yx = s.yx.copy()
    if len(yx):
        yx[:, 1] = w - 1 - yx[:, 1]
    mask = s.mask.flip(-1) if s.mask is not None else None
    return Sample(s.image.flip(-1), yx, s.cls, mask)


def crop(s: Sample, size: int, top: int, left: int) -> Sample:
    """Crop a ``size`` x ``size`` window at (top, left), zero-padding (mask: 255) outside the image.

    ``top``/``left`` may be negative (the window then starts outside the image).
    """
    c, h, w = s.image.shape
    img = s.image.new_zeros((c, size, size))
    mask = torch.full((size, size), IGNORE, dtype=torch.long) if s.mask is not None else None
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, h), min(left + size, w)
    if y1 > y0 and x1 > x0:
        img[:, y0 - top : y1 - top, x0 - left : x1 - left] = s.image[:, y0:y1, x0:x1]
        if mask is not None:
            mask[y0 - top : y1 - top, x0 - left : x1 - left] = s.mask[y0:y1, x0:x1]
    yx = s.yx - np.array([top, left], dtype=np.float64) if len(s.yx) else s.yx
    keep = np.all((yx >= -0.5) & (yx < size - 0.5), axis=1) if len(yx) else np.zeros(0, bool)
    return Sample(img, yx[keep], s.cls[keep], mask)


def random_crop_origin(h: int, w: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a random crop; images smaller than the crop get a random placement inside it."""
    top = int(rng.integers(0, h - size + 1)) if h >= size else -int(rng.integers(0, size - h + 1))
    left = int(rng.integers(0, w - size + 1)) if w >= size else -int(rng.integers(0, size - w + 1))
    return top, left


def augment(s: Sample, *, size: int, scale_range: tuple[float, float], flip: bool, rng: np.random.Generator) -> Sample:
    """Random rescale, random crop of ``size`` and random horizontal flip."""
    s = rescale(s, float(rng.uniform(*scale_range)))
    if flip and rng.random() < 0.5:
        s = hflip(s)
    top, left = random_crop_origin(s.image.shape[1], s.image.shape[2], size, rng)
    return crop(s, size, top, left)
