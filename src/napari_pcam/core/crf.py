"""IRNet's dense CRF on thresholded CAM labels (the optional ``pydensecrf2`` package).

Torch-free on purpose: :func:`crf_pair` is what the label-mining worker processes run (see
:mod:`napari_pcam.core.processes`), and a worker that imports only numpy and pydensecrf starts in a
fraction of a second. The CRF's C++ code holds the GIL for tens of milliseconds per call (building the
bilateral lattice, about 50 ms for a 128 x 128 image); in a worker process it cannot stall the viewer.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError

# IRNet's CRF settings (imutils.crf_inference_label)
CRF_ITERATIONS = 10
CRF_GT_PROB = 0.7


def crf_available() -> bool:
    """Whether the optional dense-CRF package (``pip install pydensecrf2``) can be imported."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def require_crf():
    """The dense-CRF modules ``(densecrf, unary_from_labels)``; a clear ConfigError when not installed."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_labels
    except ImportError as exc:
        raise ConfigError(
            "affinity.crf=True needs the optional dense-CRF package: pip install pydensecrf2 "
            "(or set affinity.crf to false)."
        ) from exc
    return dcrf, unary_from_labels


def crf_labels(rgb: np.ndarray, maps: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """Argmax labels over [background at ``threshold``; maps], refined by IRNet's dense CRF.

    Args:
        rgb: Contiguous uint8 H x W x 3 image (the CRF's colour term).
        maps: float32 K x H x W class maps in [0, 1].
        keys: The K class ids of ``maps``.
        threshold: Background score.

    Returns:
        uint8 (H, W) class ids (0 = background).
    """
    dcrf, unary_from_labels = require_crf()
    n = len(keys) + 1
    scores = np.concatenate([np.full((1, *maps.shape[1:]), threshold, np.float32), maps], 0)
    index = np.argmax(scores, 0)
    if n == 1:
        return np.zeros(maps.shape[1:], np.uint8)
    h, w = index.shape
    crf = dcrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(unary_from_labels(index, n, gt_prob=CRF_GT_PROB, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=rgb, compat=10)
    q = np.asarray(crf.inference(CRF_ITERATIONS)).reshape(n, h, w)
    lut = np.concatenate([[0], keys]).astype(np.uint8)
    return lut[np.argmax(q, 0)]


def crf_pair(rgb: np.ndarray, maps: np.ndarray, keys: np.ndarray, thresholds: tuple[float, float]
             ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`crf_labels` at the foreground and at the background threshold (one worker job)."""
    return tuple(crf_labels(rgb, maps, keys, t) for t in thresholds)  # type: ignore[return-value]
