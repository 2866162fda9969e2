"""Dense CRFs (the optional ``pydensecrf2`` package): IRNet's on thresholded CAM labels, DeepLab's on
class probabilities.

Torch-free on purpose: :func:`crf_pair` and :func:`crf_probabilities` are what the worker processes run (see
:mod:`napari_pcam.core.processes`), and a worker that imports only numpy and pydensecrf starts in a
fraction of a second. The CRF's C++ code holds the GIL for tens of milliseconds per call (building the
bilateral lattice, about 50 ms for a 128 x 128 image); in a worker process it cannot stall the viewer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .errors import ConfigError, PcamError
from .processes import process_map

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


def require_crf(setting: str = "affinity.crf"):
    """The dense-CRF modules ``(densecrf, unary_from_labels)``; a clear ConfigError naming ``setting``
    (the config switch that asked for the CRF) when the package is not installed."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_labels
    except ImportError as exc:
        raise ConfigError(
            f"{setting}=True needs the optional dense-CRF package: pip install pydensecrf2 "
            f"(or set {setting} to false)."
        ) from exc
    return dcrf, unary_from_labels


def _pairwise(crf, rgb: np.ndarray) -> None:
    """IRNet's pairwise terms: a 3 px smoothness kernel and a colour-sensitive bilateral kernel."""
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=rgb, compat=10)


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
    _pairwise(crf, rgb)
    q = np.asarray(crf.inference(CRF_ITERATIONS)).reshape(n, h, w)
    lut = np.concatenate([[0], keys]).astype(np.uint8)
    return lut[np.argmax(q, 0)]


def crf_pair(rgb: np.ndarray, maps: np.ndarray, keys: np.ndarray, thresholds: tuple[float, float]
             ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`crf_labels` at the foreground and at the background threshold (one worker job)."""
    return tuple(crf_labels(rgb, maps, keys, t) for t in thresholds)  # type: ignore[return-value]


def crf_probabilities(rgb: np.ndarray, probs: np.ndarray, setting: str = "deeplab.crf") -> np.ndarray:
    """Labels of class probabilities refined by a dense CRF (DeepLab v1/v2's post-processing), with the
    same kernels and iterations as IRNet's CRF; the unary is ``-log p``.

    Args:
        rgb: Contiguous uint8 H x W x 3 image (the colour term).
        probs: float32 K x H x W class probabilities (index = class id).
        setting: The config switch named in the error when ``pydensecrf2`` is missing.

    Returns:
        uint8 (H, W) class ids.
    """
    dcrf, _ = require_crf(setting)
    k, h, w = probs.shape
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"the image is {rgb.shape[:2]} but the probabilities are {(h, w)}.")
    if k == 1:
        return np.zeros((h, w), np.uint8)
    unary = -np.log(np.clip(np.asarray(probs, np.float32), 1e-8, 1.0)).reshape(k, -1)
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    _pairwise(crf, np.ascontiguousarray(rgb))
    q = np.asarray(crf.inference(CRF_ITERATIONS)).reshape(k, h, w)
    return np.argmax(q, 0).astype(np.uint8)


def crf_map(fn: Callable[..., np.ndarray], jobs: Iterable[tuple], workers: int) -> Iterator:
    """:func:`~napari_pcam.core.processes.process_map` of a CRF function; a dead worker process is a clear
    error that says how to run the CRF without workers."""
    try:
        yield from process_map(fn, jobs, workers)
    except BrokenProcessPool as exc:
        raise PcamError(
            f"a dense-CRF worker process died ({exc}); set runtime.crf_workers to 0 to run the CRF in this "
            "process instead."
        ) from exc
