"""The gated CRF loss: labels should change at colour edges, not inside regions of one colour."""

import pytest
import torch

from napari_pcam.core.crf_loss import gated_crf_loss, image_from_tensor
from napari_pcam.core.data.images import image_to_tensor


def _two_halves(split_at: int, size: int = 32) -> torch.Tensor:
    """Confident logits B=1 x 2 x size x size: class 0 left of column ``split_at``, class 1 right of it."""
    logits = torch.full((1, 2, size, size), -10.0)
    logits[0, 0, :, :split_at] = 10.0
    logits[0, 1, :, split_at:] = 10.0
    return logits


def _image_with_edge(column: int, size: int = 32) -> torch.Tensor:
    img = torch.zeros(1, 3, size, size)
    img[..., column:] = 1.0
    return img


def test_one_label_everywhere_costs_nothing():
    logits = torch.zeros(1, 3, 32, 32)
    logits[:, 1] = 20.0
    assert gated_crf_loss(logits, torch.rand(1, 3, 32, 32)).item() == pytest.approx(0.0, abs=1e-6)


def test_a_label_change_at_the_colour_edge_costs_less_than_inside_a_region_of_one_colour():
    image = _image_with_edge(16)
    at_edge = gated_crf_loss(_two_halves(16), image)
    inside = gated_crf_loss(_two_halves(8), image)
    assert at_edge.item() < 0.05 * inside.item()


def test_padding_takes_no_part():
    logits = _two_halves(8)
    valid = torch.zeros(1, 32, 32, dtype=torch.bool)
    image = _image_with_edge(16)
    assert gated_crf_loss(logits, image, valid).item() == 0.0
    valid[:, :, 12:] = True  # the label change at column 8 is inside the padding (pairs reach 10 px at factor 2)
    assert gated_crf_loss(logits, image, valid).item() < gated_crf_loss(logits, image).item()


def test_gradients_pull_uncertain_pixels_towards_their_neighbours_label():
    logits = _two_halves(32).clone()  # class 0 everywhere
    logits[0, :, 10:14, 10:14] = 0.0  # an uncertain patch in a region of one colour
    logits.requires_grad_(True)
    gated_crf_loss(logits, torch.zeros(1, 3, 32, 32)).backward()
    patch = logits.grad[0, :, 10:14, 10:14]
    assert (patch[0] < 0).all() and (patch[1] > 0).all()  # gradient descent raises class 0 there


def test_image_from_tensor_undoes_the_data_pipelines_normalisation():
    rgb = (torch.rand(5, 7, 3) * 255).round().to(torch.uint8).numpy()
    x = image_to_tensor(rgb)[None]
    torch.testing.assert_close(image_from_tensor(x)[0], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
                               atol=1e-5, rtol=0)
    grey = rgb[..., :1]
    torch.testing.assert_close(image_from_tensor(image_to_tensor(grey)[None])[0],
                               torch.from_numpy(grey).permute(2, 0, 1).float() / 255, atol=1e-5, rtol=0)


def test_the_colour_term_reads_each_crops_own_contrast():
    # a dim crop (values 0.05 and 0.15, as a faint fluorescence image) costs what a bright one (0 and 1) costs
    bright = _image_with_edge(16)
    dim = 0.05 + 0.1 * bright
    logits = torch.cat([_two_halves(16), _two_halves(8)])
    torch.testing.assert_close(gated_crf_loss(logits, torch.cat([dim, dim])),
                               gated_crf_loss(logits, torch.cat([bright, bright])))


def test_padding_does_not_set_the_contrast():
    image = 0.4 + 0.1 * _image_with_edge(16)
    padded = image.clone()
    padded[..., 24:] = 1.0  # padding far brighter than the crop
    valid = torch.ones(1, 32, 32, dtype=torch.bool)
    valid[..., 24:] = False
    logits = _two_halves(8)
    cropped = gated_crf_loss(logits[..., :24], image[..., :24])
    torch.testing.assert_close(gated_crf_loss(logits, padded, valid), cropped)
