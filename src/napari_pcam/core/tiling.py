"""Sliding-window inference: overlapping tiles, batched, outputs averaged where tiles overlap.

Pure tensor functions, device-agnostic: the caller supplies the network as a function from a batch of
tiles to per-pixel outputs of the same spatial size (e.g. DeepLabv3+ logits, Chen et al., ECCV 2018).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with step ``stride``; the last one is
    moved back to end exactly at the border (so tiles never need padding).

    Raises:
        ValueError: non-positive ``tile`` or ``stride``.
    """
    if tile <= 0 or stride <= 0:
        raise ValueError(f"tile={tile} and stride={stride} must be positive.")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def sliding_window(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    tile_size: int,
    overlap: int,
    batch: int = 4,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping tiles of ``x`` and average the outputs.

    Args:
        fn: Maps float32 B x C x h x w to float B x K x h x w.
        x: float32 C x H x W image (on the device ``fn`` expects).
        tile_size: Tile side; an image no larger than this in both dimensions is processed whole.
            Along a dimension shorter than the tile, the tile is shortened to that dimension.
        overlap: Pixels shared by neighbouring tiles (0 <= overlap < tile_size).
        batch: Tiles per call of ``fn``.

    Returns:
        float32 K x H x W, the mean of the outputs of every tile covering each pixel.
    """
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap={overlap} must lie in [0, tile_size={tile_size}).")
    _, h, w = x.shape
    th, tw = min(tile_size, h), min(tile_size, w)
    if (th, tw) == (h, w):
        return fn(x[None])[0].float()
    stride = tile_size - overlap
    boxes = [(y, xx) for y in tile_starts(h, th, stride) for xx in tile_starts(w, tw, stride)]
    total: torch.Tensor | None = None
    count = torch.zeros(1, h, w, device=x.device)
    for i in range(0, len(boxes), max(1, batch)):
        chunk = boxes[i : i + max(1, batch)]
        out = fn(torch.stack([x[:, y : y + th, xx : xx + tw] for y, xx in chunk])).float()
        if total is None:
            total = torch.zeros(out.shape[1], h, w, device=x.device)
        for (y, xx), o in zip(chunk, out):
            total[:, y : y + th, xx : xx + tw] += o
            count[:, y : y + th, xx : xx + tw] += 1
    return total / count


def sliding_window_argmax(
    fn: Callable[[torch.Tensor], torch.Tensor],
    read: Callable[[int, int, int, int], torch.Tensor],
    shape: tuple[int, int],
    *,
    tile_size: int,
    overlap: int,
    batch: int = 4,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``argmax`` over classes of :func:`sliding_window` without the whole image or its scores in memory.

    The same tiles in the same order and batches, summed in the same order, so the labels equal
    ``sliding_window(fn, x, ...).argmax(0)``; but each tile is read when its batch runs, and the scores are
    kept only for the rows that a later tile still covers (about ``K x (tile_size + a batch's rows) x W``
    floats), each finished row band going into ``out`` right away.

    Args:
        fn: As in :func:`sliding_window`.
        read: ``read(y0, y1, x0, x1)`` -> float32 C x (y1 - y0) x (x1 - x0) tensor of that part of the image
            (on the device ``fn`` expects).
        shape: (H, W) of the image.
        tile_size, overlap, batch: As in :func:`sliding_window`.
        out: uint8 H x W array to write the labels into (e.g. a memory-mapped file); None = a new one.

    Returns:
        ``out``: uint8 H x W class ids.
    """
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap={overlap} must lie in [0, tile_size={tile_size}).")
    h, w = shape
    th, tw = min(tile_size, h), min(tile_size, w)
    stride = tile_size - overlap
    starts = tile_starts(h, th, stride)
    boxes = [(y, xx) for y in starts for xx in tile_starts(w, tw, stride)]
    labels = np.empty((h, w), np.uint8) if out is None else out
    lo = 0  # scores are kept for the rows [lo, lo + total.shape[1])
    total: torch.Tensor | None = None
    count: torch.Tensor | None = None
    step = max(1, batch)
    for i in range(0, len(boxes), step):
        chunk = boxes[i : i + step]
        result = fn(torch.stack([read(y, y + th, xx, xx + tw) for y, xx in chunk])).float()
        rows = chunk[-1][0] + th - lo  # the window must reach the bottom of this batch's last tile
        if total is None:
            total = torch.zeros(result.shape[1], rows, w, device=result.device)
            count = torch.zeros(1, rows, w, device=result.device)
        elif rows > total.shape[1]:
            extra = rows - total.shape[1]
            total = torch.cat([total, total.new_zeros(total.shape[0], extra, w)], 1)
            count = torch.cat([count, count.new_zeros(1, extra, w)], 1)
        for (y, xx), o in zip(chunk, result):
            total[:, y - lo : y - lo + th, xx : xx + tw] += o
            count[:, y - lo : y - lo + th, xx : xx + tw] += 1
        later = boxes[i + step][0] if i + step < len(boxes) else h  # no later tile starts above this row
        if later > lo:
            done = later - lo
            labels[lo:later] = (total[:, :done] / count[:, :done]).argmax(0).cpu().numpy().astype(np.uint8)
            total, count, lo = total[:, done:], count[:, done:], later
    return labels
