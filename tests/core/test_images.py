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
