"""Mining confident labels from (P)CAMs for IRNet training (paper section 3.2; IRNet's
``cam_to_ir_label``, Ahn et al., CVPR 2019).

Foreground where the best class score exceeds ``fg_threshold`` (that class), background where every
score is below ``bg_threshold``, everything in between ignored (255). Optionally, as IRNet does, both the
foreground and the background map are refined with a dense CRF (the optional ``pydensecrf2`` package;
the PCAM paper does not mention a CRF, so it is off by default).
"""

from __future__ import annotations

import numpy as np

from ..config import AffinityConfig
from ..data.cams import CamMaps, cams_to_labels
from ..data.images import normalise_image
from ..errors import ConfigError, DataError

IGNORE = 255

# IRNet's CRF settings (imutils.crf_inference_label)
CRF_ITERATIONS = 10
CRF_GT_PROB = 0.7


def mine_labels(cams: CamMaps, config: AffinityConfig, image: np.ndarray | None = None) -> np.ndarray:
    """Confident label map of one image.

    Args:
        cams: The image's CAMs (``highres`` float32 K x H x W in [0, 1]).
        config: Thresholds and the CRF switch.
        image: The image (H x W x C), needed only with ``config.crf``.

    Returns:
        uint8 (H, W): class ids where confident, 0 for confident background, 255 elsewhere.

    Raises:
        DataError: CRF requested without an image, or an image of another size than the CAMs.
        ConfigError: CRF requested but ``pydensecrf2`` is not installed.
    """
    maps, keys = np.asarray(cams.highres, np.float32), np.asarray(cams.keys, np.int64)
    if np.any(keys > 254):
        raise DataError("affinity labels support class ids up to 254 (255 marks ignored pixels).")
    if not np.all(np.isfinite(maps)):
        raise DataError("the CAMs contain NaN or infinite values; recompute them.")
    if config.crf:
        if image is None or image.shape[:2] != maps.shape[1:]:
            raise DataError(f"the dense CRF needs the image, of the CAMs' size {maps.shape[1:]}.")
        fg = _crf_labels(image, maps, keys, config.fg_threshold)
        bg = _crf_labels(image, maps, keys, config.bg_threshold)
    else:
        fg = cams_to_labels(maps, keys, config.fg_threshold)
        bg = cams_to_labels(maps, keys, config.bg_threshold)
    conf = fg.astype(np.uint8)
    conf[fg == 0] = IGNORE
    conf[(fg == 0) & (bg == 0)] = 0
    return conf


def crf_available() -> bool:
    """Whether the optional dense-CRF package (``pip install pydensecrf2``) can be imported."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def _crf_labels(image: np.ndarray, maps: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """Argmax labels over [background at ``threshold``; maps], refined by IRNet's dense CRF."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_labels
    except ImportError as exc:
        raise ConfigError(
            "affinity.crf=True needs the optional dense-CRF package: pip install pydensecrf2 "
            "(or set affinity.crf to false)."
        ) from exc
    n = len(keys) + 1
    scores = np.concatenate([np.full((1, *maps.shape[1:]), threshold, np.float32), maps], 0)
    index = np.argmax(scores, 0)
    if n == 1:
        return np.zeros(maps.shape[1:], np.uint8)
    h, w = index.shape
    rgb = _as_rgb8(image)
    crf = dcrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(unary_from_labels(index, n, gt_prob=CRF_GT_PROB, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=rgb, compat=10)
    q = np.asarray(crf.inference(CRF_ITERATIONS)).reshape(n, h, w)
    lut = np.concatenate([[0], keys]).astype(np.uint8)
    return lut[np.argmax(q, 0)]


def _as_rgb8(image: np.ndarray) -> np.ndarray:
    """H x W x C image -> contiguous uint8 H x W x 3 for the CRF's colour term."""
    img = normalise_image(image if image.ndim == 3 else image[..., None])
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 2:
        img = np.concatenate([img, img[..., :1]], axis=2)
    return np.ascontiguousarray((img[..., :3] * 255).round().astype(np.uint8))
