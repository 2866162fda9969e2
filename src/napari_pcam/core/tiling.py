"""Sliding-window inference: overlapping tiles, batched, outputs averaged where tiles overlap.

Pure tensor functions, device-agnostic: the caller supplies the network as a function from a batch of
tiles to per-pixel outputs of the same spatial size (e.g. DeepLabv3+ logits, Chen et al., ECCV 2018).
"""

from __future__ import annotations

from typing import Callable

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
