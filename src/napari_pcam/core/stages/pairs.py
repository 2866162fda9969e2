"""Pair geometry of IRNet (Ahn et al., "Weakly Supervised Learning of Instance Segmentation with
Inter-pixel Relations", CVPR 2019): search directions, the pixel path of each pair, pair labels, and
affinities from a boundary map.

All grids are at stride 4. A *direction* ``(dy, dx)`` pairs every pixel ``p`` with ``p + (dy, dx)``.
Directions cover half of the disc of the given radius (``dy > 0``, or ``dy == 0`` and ``dx > 0``) so each
unordered pair appears once: 34 directions at radius 5 and 152 at radius 10, as IRNet's ``PathIndex``.
Pair tensors are laid out as ``D x H x W`` (direction, source row, source column); pairs whose
destination falls outside the grid are invalid (label 0, affinity 0).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = 255


@lru_cache(maxsize=16)
def search_directions(radius: int) -> np.ndarray:
    """Half-disc offsets within ``radius`` (exclusive): int64 (D, 2) rows ``(dy, dx)``.

    Order: ``(0, 1) .. (0, radius - 1)``, then row by row ``dy = 1 .. radius - 1`` with ``dx`` ascending.
    """
    if radius < 2:
        raise ValueError(f"the search radius must be at least 2, got {radius}.")
    dirs = [(0, dx) for dx in range(1, radius)]
    for dy in range(1, radius):
        dirs += [(dy, dx) for dx in range(-radius + 1, radius) if dx * dx + dy * dy < radius * radius]
    out = np.asarray(dirs, dtype=np.int64)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1024)
def path_offsets(dy: int, dx: int) -> np.ndarray:
    """Pixels of the straight path from ``(0, 0)`` to ``(dy, dx)``: int64 (L, 2), both ends included.

    A pixel of the bounding box belongs to the path when its distance to the line through both ends is
    below one pixel (IRNet's rule). Sorted by Manhattan distance from the source.
    """
    length_sq = dy * dy + dx * dx
    pts = []
    for y in range(min(0, dy), max(0, dy) + 1):
        for x in range(min(0, dx), max(0, dx) + 1):
            if (dy * x - dx * y) ** 2 < length_sq:  # squared distance to the line < 1
                pts.append((y, x))
    pts.sort(key=lambda p: (abs(p[0]) + abs(p[1]), p))
    out = np.asarray(pts, dtype=np.int64)
    out.setflags(write=False)
    return out


def shift(x: torch.Tensor, dy: int, dx: int, fill: float = 0.0) -> torch.Tensor:
    """``out[..., i, j] = x[..., i + dy, j + dx]``, ``fill`` where that lies outside: same shape as x."""
    h, w = x.shape[-2:]
    pad = (max(0, -dx), max(0, dx), max(0, -dy), max(0, dy))
    padded = F.pad(x, pad, value=fill)
    y0, x0 = max(0, dy), max(0, dx)
    return padded[..., y0 : y0 + h, x0 : x0 + w]


def pair_labels(labels: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affinity labels of all pairs of a stride-4 label map (IRNet's ``GetAffinityLabelFromIndices``).

    Args:
        labels: int (..., H, W) class ids, 0 = background, 255 = ignored.
        radius: Search radius.

    Returns:
        ``(bg_pos, fg_pos, neg)``, float32 (..., D, H, W) each: both ends background; both ends the same
        foreground class; ends of different classes. Pairs with an ignored end or outside the grid are 0
        in all three.
    """
    labels = labels.long()
    src = labels.unsqueeze(-3)
    dst = torch.stack([shift(labels, int(dy), int(dx), fill=IGNORE) for dy, dx in search_directions(radius)], -3)
    valid = (src != IGNORE) & (dst != IGNORE)
    equal = (src == dst) & valid
    bg_pos = equal & (src == 0)
    fg_pos = equal & (src > 0)
    neg = valid & (src != dst)
    return bg_pos.float(), fg_pos.float(), neg.float()


def path_affinity(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """Affinity of every pair: ``1 - max(boundary)`` over the pixels of its path (both ends included).

    Args:
        boundary: float (..., H, W) boundary probabilities in [0, 1].
        radius: Search radius.

    Returns:
        float (..., D, H, W); 0 for pairs whose destination lies outside the grid (the boundary is padded
        with 1, as IRNet does). Differentiable with respect to ``boundary``.
    """
    affs = []
    for dy, dx in search_directions(radius):
        path = path_offsets(int(dy), int(dx))
        stacked = torch.stack([shift(boundary, int(oy), int(ox), fill=1.0) for oy, ox in path], 0)
        affs.append(1.0 - stacked.amax(0))
    return torch.stack(affs, -3)


def pair_displacement_target(radius: int) -> torch.Tensor:
    """float32 (D, 2): the offset ``(dy, dx)`` of each direction (target of IRNet's displacement loss)."""
    return torch.tensor(np.array(search_directions(radius)), dtype=torch.float32)


def pair_difference(field: torch.Tensor, radius: int) -> torch.Tensor:
    """``field(p) - field(p + d)`` for every direction: (..., C, H, W) -> (..., C, D, H, W), 0 outside."""
    diffs = [field - shift(field, int(dy), int(dx)) for dy, dx in search_directions(radius)]
    return torch.stack(diffs, -3)
