import numpy as np
import pytest

from napari_pcam.core.data.images import ImageStack, image_to_tensor
from napari_pcam.core.data.readers import read_image_folder
from napari_pcam.core.errors import DataError


def test_grayscale_rgb_and_multichannel_layouts():
    assert ImageStack.from_array(np.zeros((32, 40))).channels == 1
    assert ImageStack.from_array(np.zeros((32, 40, 3), np.uint8), rgb=True).channels == 3
    mc = ImageStack.from_array(np.zeros((5, 32, 40)), channel_axis=0)
    assert mc.channels == 5 and len(mc) == 1


def test_3d_stack_becomes_slices():
    stack = ImageStack.from_array(np.zeros((4, 32, 40), np.uint16))
    assert len(stack) == 4 and stack.shapes == [(32, 40)] * 4 and stack.names[2] == "slice_0002"


def test_4d_without_channels_is_rejected():
    with pytest.raises(DataError, match="3 spatial dimensions|2D images"):
        ImageStack.from_array(np.zeros((2, 3, 32, 40)))


def test_different_channel_counts_are_rejected():
    with pytest.raises(DataError, match="different channel counts"):
        ImageStack([np.zeros((32, 32, 3)), np.zeros((32, 32))], ["a", "b"])


def test_tensor_normalisation_uint16():
    img = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32, 1) * 50
    x = image_to_tensor(img)
    assert x.shape == (1, 32, 32) and x.dtype.is_floating_point and np.isfinite(x.numpy()).all()


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        read_image_folder(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="holds no images"):
        read_image_folder(tmp_path)


def test_lazy_stack_checks_sizes_and_names_without_reading():
    from napari_pcam.core.data.images import LazyImages

    def read(i):
        raise AssertionError("nothing may be read while building the stack")

    stack = ImageStack(LazyImages(read, [(20, 30), (40, 16)], 2, "k"), ["a", "b"])
    assert stack.shapes == [(20, 30), (40, 16)] and stack.channels == 2 and len(stack) == 2
    with pytest.raises(DataError, match="at least 16 x 16"):
        ImageStack(LazyImages(read, [(20, 30), (8, 16)], 1, "k"), ["a", "b"])
    with pytest.raises(DataError, match="unique names"):
        ImageStack(LazyImages(read, [(20, 30), (20, 16)], 1, "k"), ["a", "a"])
    grey = ImageStack(LazyImages(lambda i: np.zeros((20, 30), np.uint8), [(20, 30)], 1, "k"), ["a"])
    assert grey.images[0].shape == (20, 30, 1)  # 2D files come back as H x W x 1, like eager stacks


def test_lazy_sequence_views_and_take():
    from napari_pcam.core.data.lazy import LazySequence, take

    calls = []
    seq = LazySequence([1, 2, 3, 4], lambda v: calls.append(v) or v * 10)
    assert calls == [] and len(seq) == 4 and seq[1] == 20 and calls == [2]
    sub = seq.subset([3, 0])
    assert list(sub) == [40, 10] and sub[-1] == 10 and seq[1:3] == [20, 30]
    assert isinstance(take(seq, [1]), LazySequence) and take([5, 6, 7], [2, 0]) == [7, 5]


class _Banded:
    """An image that can only be sliced; records the rows each read holds."""

    def __init__(self, array):
        self.array, self.dtype, self.shape, self.rows = array, array.dtype, array.shape, []

    def __getitem__(self, key):
        part = self.array[key]
        self.rows.append(part.shape[0])
        return part

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole image was converted to one array")


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int8])
def test_value_range_of_integer_images_is_numpys_percentiles_read_in_bands(dtype):
    from napari_pcam.core.data.images import value_range, value_range_of

    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    image = rng.integers(info.min, info.max, (203, 71, 2)).astype(dtype)
    lazy = _Banded(image)
    lo, hi = value_range(lazy, band_rows=50)
    expected_lo, expected_hi = value_range_of(image.astype(np.float32))
    np.testing.assert_array_equal(lo, expected_lo)
    np.testing.assert_array_equal(hi, expected_hi)
    assert max(lazy.rows) == 50 and sum(lazy.rows) == 203


def test_value_range_of_a_large_float_image_comes_from_a_strided_subsample(monkeypatch):
    from napari_pcam.core.data import images

    image = np.random.default_rng(2).normal(3.0, 2.0, (400, 300, 1)).astype(np.float32)
    exact = images.value_range(image)
    np.testing.assert_array_equal(exact[0], images.value_range_of(image)[0])
    monkeypatch.setattr(images, "EXACT_VALUES", 10_000)  # 120,000 values: every 4th row and column
    lazy = _Banded(image)
    lo, hi = images.value_range(lazy, band_rows=64)
    assert sum(lazy.rows) == 100
    np.testing.assert_allclose(lo, exact[0], rtol=0.05)
    np.testing.assert_allclose(hi, exact[1], rtol=0.05)


def test_a_tile_scaled_by_the_whole_images_range_equals_that_part_of_the_whole_image():
    from napari_pcam.core.data.images import normalise_image, value_range

    image = np.random.default_rng(3).integers(0, 4096, (64, 48, 3)).astype(np.uint16)
    whole = normalise_image(image)
    tile = normalise_image(image[10:30, 5:40], value_range(image))
    np.testing.assert_array_equal(tile, whole[10:30, 5:40])
    assert value_range(image.astype(np.uint8)) is None


def test_a_lazy_stack_of_a_dask_array_keeps_its_slices_unread():
    da = pytest.importorskip("dask.array")
    pixels = np.random.default_rng(6).integers(0, 255, (3, 40, 32), np.uint16)
    stack = ImageStack.from_array(da.from_array(pixels, chunks=(1, 16, 16)), lazy=True)
    assert stack.lazy and stack.names == ["slice_0000", "slice_0001", "slice_0002"] and stack.channels == 1
    assert stack.shapes == [(40, 32)] * 3
    view = stack.images[1]
    assert isinstance(view, da.Array) and view.shape == (40, 32, 1)
    np.testing.assert_array_equal(np.asarray(view[5:9]), pixels[1, 5:9, :, None])
    eager = ImageStack.from_array(da.from_array(pixels, chunks=(1, 16, 16)))
    assert not eager.lazy and isinstance(eager.images[1], np.ndarray)
    assert not ImageStack.from_array(pixels, lazy=True).lazy  # numpy data is used as it is
