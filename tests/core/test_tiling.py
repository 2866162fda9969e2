"""Sliding-window tiling: coverage of every pixel and exact averaging."""

import numpy as np
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


class _OnlySlices:
    """An image that can only be sliced (like a zarr array): converting it whole fails the test."""

    def __init__(self, array):
        self.array, self.dtype, self.shape, self.reads = array, array.dtype, array.shape, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole image was converted to one array")


@pytest.mark.parametrize("tile,overlap,batch", [(16, 4, 1), (16, 4, 3), (24, 8, 4), (20, 0, 2), (64, 8, 4)])
def test_streamed_argmax_equals_the_argmax_of_the_whole_sliding_window(tile, overlap, batch):
    from napari_pcam.core.tiling import sliding_window_argmax

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(3, 45, 38)
    with torch.no_grad():
        expected = sliding_window(net, x, tile_size=tile, overlap=overlap, batch=batch).argmax(0).numpy()
        labels = sliding_window_argmax(net, lambda y0, y1, x0, x1: x[:, y0:y1, x0:x1], (45, 38),
                                       tile_size=tile, overlap=overlap, batch=batch)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)


def test_predict_labels_reads_tiles_only_and_equals_the_whole_image_labels():
    from napari_pcam.core.config import DeepLabConfig
    from napari_pcam.core.stages.segmentation import build_deeplab
    from napari_pcam.core.stages.segmentation_inference import predict_labels, predict_logits

    torch.manual_seed(0)
    model = build_deeplab(DeepLabConfig(backbone="resnet18", weights="none"), num_classes=4, in_channels=3).eval()
    image = np.random.default_rng(0).integers(0, 255, (100, 90, 3), np.uint8)
    kwargs = {"tile_size": 48, "tile_overlap": 16, "batch": 2, "amp": False}
    expected = predict_logits(model, image, **kwargs).argmax(0).numpy()
    lazy = _OnlySlices(image)
    np.testing.assert_array_equal(predict_labels(model, lazy, **kwargs), expected)
    assert len(lazy.reads) == 9, "one read per tile (3 x 3 tiles of 48 px with 16 px overlap)"


def test_predict_labels_tiles_a_16_bit_grayscale_image_scaled_as_the_whole_image():
    from napari_pcam.core.config import DeepLabConfig
    from napari_pcam.core.stages.segmentation import build_deeplab
    from napari_pcam.core.stages.segmentation_inference import predict, predict_labels, predict_logits

    torch.manual_seed(0)
    model = build_deeplab(DeepLabConfig(backbone="resnet18", weights="none"), num_classes=3, in_channels=1).eval()
    image = np.random.default_rng(4).integers(100, 3000, (90, 70)).astype(np.uint16)
    kwargs = {"tile_size": 48, "tile_overlap": 16, "batch": 2, "amp": False}
    expected = predict_logits(model, image, **kwargs).argmax(0).numpy()
    lazy = _OnlySlices(image)
    np.testing.assert_array_equal(predict_labels(model, lazy, **kwargs), expected)
    assert len(lazy.reads) == 1 + 6, "one pass for the intensity range (90 rows < a band), then one read per tile"
    np.testing.assert_array_equal(predict(model, image, **kwargs), expected)
