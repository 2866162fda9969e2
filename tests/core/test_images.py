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
