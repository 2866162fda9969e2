"""Dense CRFs: DeepLab's on class probabilities (IRNet's on CAM labels is tested with the label mining)."""

import sys

import numpy as np
import pytest

from napari_pcam.core.crf import crf_available, crf_probabilities, require_crf
from napari_pcam.core.errors import ConfigError

needs_crf = pytest.mark.skipif(not crf_available(), reason="pydensecrf2 is not installed")


def _two_regions(h=32, w=32):
    """A dark left half and a bright right half, and probabilities that favour class 1 on the right."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, w // 2:] = 200
    probs = np.empty((2, h, w), np.float32)
    probs[1] = np.where(np.arange(w) >= w // 2, 0.8, 0.2)[None, :]
    probs[0] = 1 - probs[1]
    return rgb, probs


@needs_crf
def test_confident_probabilities_keep_their_argmax():
    rgb, probs = _two_regions()
    np.testing.assert_array_equal(crf_probabilities(rgb, probs), probs.argmax(0))


@needs_crf
def test_isolated_uncertain_pixels_follow_their_colour_region():
    rgb, probs = _two_regions()
    flips = [(5, 20), (12, 25), (20, 18), (27, 29)]  # bright-half pixels that slightly favour class 0
    for y, x in flips:
        probs[:, y, x] = (0.55, 0.45)
    assert all(probs[:, y, x].argmax() == 0 for y, x in flips)
    labels = crf_probabilities(rgb, probs)
    assert labels.dtype == np.uint8 and labels.shape == (32, 32)
    np.testing.assert_array_equal(labels, (np.arange(32) >= 16)[None, :].repeat(32, 0).astype(np.uint8))


@needs_crf
def test_one_class_is_all_that_class_and_sizes_must_match():
    rgb, probs = _two_regions()
    assert not crf_probabilities(rgb, np.ones((1, 32, 32), np.float32)).any()
    with pytest.raises(ValueError, match="probabilities"):
        crf_probabilities(rgb[:16], probs)


def test_missing_package_names_the_setting_that_asked_for_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)  # import fails
    with pytest.raises(ConfigError, match=r"deeplab\.crf=True needs .*pydensecrf2.*set deeplab\.crf to false"):
        require_crf("deeplab.crf")
    with pytest.raises(ConfigError, match="affinity.crf"):
        require_crf()
