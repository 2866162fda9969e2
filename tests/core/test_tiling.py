"""Sliding-window tiling: coverage of every pixel and exact averaging."""

import pytest
import torch

from napari_pcam.core.tiling import sliding_window, tile_starts


def test_tile_starts_cover_and_end_at_border():
    assert tile_starts(100, 64, 48) == [0, 36]
    assert tile_starts(64, 64, 32) == [0]
    assert tile_starts(40, 64, 32) == [0]
    starts = tile_starts(300, 64, 48)
    assert starts[-1] == 300 - 64 and all(b - a <= 48 for a, b in zip(starts, starts[1:]))


def test_pointwise_function_gives_identical_output_tiled_and_whole():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(3, 150, 97)
    with torch.no_grad():
        whole = conv(x[None])[0]
        tiled = sliding_window(conv, x, tile_size=64, overlap=16, batch=3)
    torch.testing.assert_close(tiled, whole)


def test_overlapping_outputs_are_averaged():
    calls = []

    def tile_index(t):  # every tile outputs its own index: overlaps hold the mean of the indices
        calls.append(len(t))
        base = sum(calls[:-1])
        return torch.arange(base, base + len(t), dtype=torch.float32)[:, None, None, None].expand(-1, 1, *t.shape[-2:])

    out = sliding_window(tile_index, torch.zeros(1, 32, 96), tile_size=64, overlap=32, batch=1)
    assert out[0, 0, 0] == 0 and out[0, 0, 95] == 1 and out[0, 0, 40] == pytest.approx(0.5)
    assert calls == [1, 1]


def test_bad_overlap_is_rejected():
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(lambda t: t, torch.zeros(1, 8, 8), tile_size=64, overlap=64)
