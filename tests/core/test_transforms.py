import numpy as np
import torch

from napari_pcam.core.data.transforms import Sample, crop, hflip, rescale


def marked(h=20, w=30, points=((3, 4), (10, 25))):
    """Image whose pixels at the points are 1, all else 0."""
    img = torch.zeros(1, h, w)
    for y, x in points:
        img[0, y, x] = 1
    return Sample(img, np.array(points, float), np.arange(1, len(points) + 1))


def test_flip_moves_points_with_pixels():
    s = hflip(marked())
    for y, x in s.yx.astype(int):
        assert s.image[0, y, x] == 1


def test_crop_moves_and_drops_points():
    s = crop(marked(), 12, top=2, left=20)
    assert s.image.shape == (1, 12, 12)
    np.testing.assert_allclose(s.yx, [[8, 5]])
    np.testing.assert_array_equal(s.cls, [2])
    assert s.image[0, 8, 5] == 1


def test_crop_larger_than_image_pads_and_shifts():
    s = crop(marked(), 40, top=-5, left=-3)
    np.testing.assert_allclose(s.yx, [[8, 7], [15, 28]])
    for y, x in s.yx.astype(int):
        assert s.image[0, y, x] == 1


def test_rescale_maps_pixel_centres():
    s = Sample(torch.zeros(1, 10, 10), np.array([[0.0, 9.0], [4.5, 4.5]]), np.array([1, 1]))
    r = rescale(s, 2.0)
    assert r.image.shape == (1, 20, 20)
    np.testing.assert_allclose(r.yx, [[0.5, 18.5], [9.5, 9.5]])


def test_rescale_keeps_blob_under_point():
    img = torch.zeros(1, 40, 40)
    img[0, 10:14, 28:32] = 1
    s = rescale(Sample(img, np.array([[11.5, 29.5]]), np.array([1])), 0.5)
    y, x = np.rint(s.yx[0]).astype(int)
    assert s.image[0, y, x] > 0.5


def test_mask_follows_flip_and_crop():
    img = torch.zeros(1, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[2, 1] = 3
    s = crop(hflip(Sample(img, np.zeros((0, 2)), np.zeros(0, int), mask)), 6, 1, 1)
    assert s.mask[1, 5] == 3 and s.mask.shape == (6, 6)
