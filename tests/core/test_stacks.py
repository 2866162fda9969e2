"""The stack/channel rule (core/data/stacks.py) and how a folder of TIFF stacks becomes named slices."""

import warnings

import numpy as np
import pytest
import tifffile

from napari_pcam.core.data.images import ImageStack
from napari_pcam.core.data.readers import read_image_folder, read_masks, slice_name
from napari_pcam.core.data.stacks import layout
from napari_pcam.core.errors import DataError


def _imwrite(path, data, **kw):
    with warnings.catch_warnings():  # tifffile's deprecation note on 3/4-plane arrays
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, data, **kw)


def _zhwc(shape, axes=None, **kw):
    return layout(shape, axes, **kw).split(np.zeros(shape)).shape


@pytest.mark.parametrize("shape, axes, expected", [
    ((20, 64, 64), "ZYX", (20, 64, 64, 1)),
    ((20, 64, 64), "IYX", (20, 64, 64, 1)),  # plain pages (e.g. Pillow's multi-frame TIFF)
    ((20, 64, 64), "QYX", (20, 64, 64, 1)),
    ((4, 64, 64), "CYX", (1, 64, 64, 4)),
    ((20, 64, 64), "CYX", (1, 64, 64, 20)),  # metadata wins, however many channels
    ((64, 64, 3), "YXS", (1, 64, 64, 3)),
    ((5, 2, 64, 64), "ZCYX", (5, 64, 64, 2)),
    ((2, 5, 64, 64), "CZYX", (5, 64, 64, 2)),
    ((1, 5, 1, 64, 64), "TZCYX", (5, 64, 64, 1)),  # length-1 axes are dropped
    ((5, 64, 64, 3), "TYXS", (5, 64, 64, 3)),
])
def test_axes_metadata_decides(shape, axes, expected):
    assert _zhwc(shape, axes) == expected


@pytest.mark.parametrize("shape, expected", [
    ((64, 64), (1, 64, 64, 1)),
    ((20, 64, 64), (20, 64, 64, 1)),
    ((4, 64, 64), (4, 64, 64, 1)),  # a small leading axis is slices, not channels
    ((64, 64, 3), (1, 64, 64, 3)),  # a last axis of <= 4 is channels
    ((5, 64, 64, 3), (5, 64, 64, 3)),
    ((1, 64, 64), (1, 64, 64, 1)),
])
def test_without_metadata(shape, expected):
    assert _zhwc(shape) == expected


def test_explicit_axes_override_the_metadata():
    assert _zhwc((4, 64, 64), "ZYX", channel_axis=0) == (1, 64, 64, 4)
    assert _zhwc((4, 64, 64), "CYX", stack_axis=0) == (4, 64, 64, 1)
    assert _zhwc((2, 5, 64, 64), channel_axis=0) == (5, 64, 64, 2)  # the axis left over is the slices
    assert _zhwc((64, 64, 5, 2), stack_axis=2, channel_axis=-1) == (5, 64, 64, 2)
    assert _zhwc((64, 64), channel_axis=0) == (1, 64, 64, 1)  # 2D arrays have nothing to choose


def test_split_keeps_the_pixels_in_place():
    data = np.arange(2 * 5 * 16 * 17).reshape(2, 5, 16, 17)
    out = layout(data.shape, "CZYX").split(data)
    np.testing.assert_array_equal(out[3, :, :, 1], data[1, 3])


@pytest.mark.parametrize("shape, axes, kw, message", [
    ((2, 5, 2, 64, 64), "TZCYX", {}, "more than one slice axis"),
    ((2, 3, 64, 64, 3), "CZYXS", {}, "more than one channel axis"),
    ((5, 6, 64, 64), None, {}, "pass --stack-axis and --channel-axis"),
    ((3, 64, 64), None, {"channel_axis": 5}, "--channel-axis 5 does not exist"),
    ((3, 64, 64), None, {"stack_axis": 0, "channel_axis": 0}, "name the same axis"),
    ((3, 4, 64, 64), None, {"stack_axis": 0}, "exactly two"),
])
def test_axes_it_cannot_assign_are_named(shape, axes, kw, message):
    with pytest.raises(DataError, match=message):
        layout(shape, axes, source="image 'a.tif'", **kw)


def test_a_3d_tiff_stack_becomes_named_slices(tmp_path):
    """Issue 15: 20 slices of 256 x 256 were read as one 20 x 256 image with 256 channels."""
    data = np.random.default_rng(0).integers(0, 255, (20, 256, 256), dtype=np.uint8)
    _imwrite(tmp_path / "cells.tif", data)
    stack = read_image_folder(tmp_path)
    assert len(stack) == 20 and stack.channels == 1 and stack.shapes == [(256, 256)] * 20
    assert stack.names[0] == "cells_z000.tif" and stack.names[19] == "cells_z019.tif"
    assert stack.sources[7] == ("cells.tif", 7)
    np.testing.assert_array_equal(stack.images[7][..., 0], data[7])


def test_a_4_slice_stack_is_slices_not_channels(tmp_path):
    """Issue 15: a 4-slice stack ran as one 4-channel image (tifffile stores 3 or 4 planes as 'RGB')."""
    _imwrite(tmp_path / "s.tif", np.zeros((4, 32, 32), np.uint8))
    stack = read_image_folder(tmp_path)
    assert len(stack) == 4 and stack.channels == 1
    assert read_image_folder(tmp_path, channel_axis=0).channels == 4  # the option says otherwise


def test_metadata_of_imagej_and_rgb_files(tmp_path):
    _imwrite(tmp_path / "hyper.tif", np.zeros((3, 2, 32, 32), np.uint8), imagej=True, metadata={"axes": "ZCYX"})
    _imwrite(tmp_path / "rgb.tif", np.zeros((32, 32, 2), np.uint8), metadata={"axes": "YXC"})
    stack = read_image_folder(tmp_path)
    assert stack.names == ["hyper_z000.tif", "hyper_z001.tif", "hyper_z002.tif", "rgb.tif"]
    assert stack.channels == 2


def test_multi_frame_tiff_from_pillow(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((32, 32), i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "pil.tif", save_all=True, append_images=frames[1:])
    stack = read_image_folder(tmp_path)
    assert len(stack) == 3 and [int(img.max()) for img in stack.images] == [0, 1, 2]


def test_a_5d_file_is_an_error_naming_its_axes(tmp_path):
    _imwrite(tmp_path / "tz.tif", np.zeros((2, 3, 32, 32), np.uint8), metadata={"axes": "TZYX"})
    with pytest.raises(DataError, match=r"'tz.tif' has axes TZYX .*more than one slice axis"):
        read_image_folder(tmp_path)


def test_slice_names_taken_twice_are_named(tmp_path):
    _imwrite(tmp_path / "a.tif", np.zeros((2, 32, 32), np.uint8))
    _imwrite(tmp_path / "a_z001.tif", np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match="'a_z001.tif' is taken twice"):
        read_image_folder(tmp_path)


def test_slice_name_width():
    assert slice_name("c.tiff", 3, 10) == "c_z003.tiff" and slice_name("c.tif", 12, 2000) == "c_z0012.tif"


def test_mask_stacks_match_image_stacks(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    _imwrite(tmp_path / "img" / "c.tif", np.zeros((3, 32, 32), np.uint8))
    masks = np.stack([np.full((32, 32), i, np.uint8) for i in range(3)])
    _imwrite(tmp_path / "mask" / "c.tif", masks)
    stack = read_image_folder(tmp_path / "img")
    read = read_masks(tmp_path / "mask", stack.names, stack.sources)
    assert [int(m.max()) for m in read] == [0, 1, 2] and read[0].dtype == np.int64
    _imwrite(tmp_path / "mask" / "c.tif", masks[:2])
    with pytest.raises(DataError, match="has 2 slices, image 'c.tif' has 3"):
        read_masks(tmp_path / "mask", stack.names, stack.sources)


def test_layers_follow_the_same_rule():
    """The viewer: a channel axis chosen, else a third axis is the slices (as a TIFF without metadata)."""
    assert len(ImageStack.from_array(np.zeros((4, 32, 32)))) == 4
    assert ImageStack.from_array(np.zeros((4, 32, 32)), channel_axis=0).channels == 4
    two = ImageStack.from_array(np.zeros((3, 2, 32, 32)), channel_axis=1)
    assert len(two) == 3 and two.channels == 2


def _mapped(array) -> bool:
    while array is not None and not isinstance(array, np.memmap):
        array = array.base
    return array is not None


def test_a_large_uncompressed_tiff_is_memory_mapped_and_a_compressed_one_is_read(tmp_path, monkeypatch):
    import tifffile

    from napari_pcam.core.data import readers

    monkeypatch.setattr(readers, "MEMMAP_PIXELS", 40 * 30 - 1)
    pixels = np.random.default_rng(0).integers(0, 255, (40, 30, 3), np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", pixels, photometric="rgb")
    tifffile.imwrite(tmp_path / "zipped.tif", pixels, photometric="rgb", compression="zlib")
    (tmp_path / "gray").mkdir()
    tifffile.imwrite(tmp_path / "gray" / "stack.tif", np.stack([pixels[..., 0]] * 2), metadata={"axes": "ZYX"})
    stack = readers.read_image_folder(tmp_path)
    by_name = dict(zip(stack.names, stack.images))
    assert _mapped(by_name["plain.tif"]) and not _mapped(by_name["zipped.tif"])
    slices = readers.read_image_folder(tmp_path / "gray").images
    assert _mapped(slices[0]) and slices[1].shape == (40, 30, 1)
    np.testing.assert_array_equal(by_name["plain.tif"], pixels)
    np.testing.assert_array_equal(by_name["zipped.tif"], pixels)
    monkeypatch.setattr(readers, "MEMMAP_PIXELS", 40 * 30)  # not more pixels than the limit: read
    assert not _mapped(readers.read_image(tmp_path / "plain.tif"))
