"""Mining confident labels from (P)CAMs for IRNet training (paper section 3.2; IRNet's
``cam_to_ir_label``, Ahn et al., CVPR 2019).

Foreground where the best class score exceeds ``fg_threshold`` (that class), background where every
score is below ``bg_threshold``, everything in between ignored (255). Optionally, as IRNet does, both the
foreground and the background map are refined with a dense CRF (the optional ``pydensecrf2`` package;
the PCAM paper does not mention a CRF, so it is off by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..config import AffinityConfig
from ..crf import crf_available, crf_map, crf_pair, require_crf
from ..data.cams import CamMaps, cams_to_labels
from ..data.images import to_rgb8
from ..errors import DataError

__all__ = ["IGNORE", "crf_available", "mine_all", "mine_labels"]

IGNORE = 255


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
    rgb, maps, keys, thresholds = _job(cams, config, image)
    if config.crf:
        return _combine(*crf_pair(rgb, maps, keys, thresholds))
    return _combine(*(cams_to_labels(maps, keys, t) for t in thresholds))


def mine_all(
    items: Iterable[tuple[CamMaps, np.ndarray | None]], config: AffinityConfig, *, workers: int = 0
) -> Iterator[np.ndarray]:
    """:func:`mine_labels` for every image, in order (consumed lazily, a few images ahead of the results).

    Args:
        items: ``(cams, image)`` per image (the image, H x W x C, is needed only with the CRF).
        config: Thresholds and the CRF switch.
        workers: With the CRF, worker processes that run it (0 = this process; the labels are the same).
            The CRF's C++ code holds the GIL, so a viewer stays responsive only when it runs elsewhere.
    """
    if not config.crf or workers <= 0:
        for cam, img in items:
            yield mine_labels(cam, config, img)
        return
    jobs = (_job(cam, config, img) for cam, img in items)
    for pair in crf_map(crf_pair, jobs, workers):
        yield _combine(*pair)


def _job(cams: CamMaps, config: AffinityConfig, image: np.ndarray | None) -> tuple:
    """Checked arguments of :func:`crf_pair` (rgb, maps, keys, thresholds); the image is only read with the CRF."""
    maps, keys = np.asarray(cams.highres, np.float32), np.asarray(cams.keys, np.int64)
    if np.any(keys > 254):
        raise DataError("affinity labels support class ids up to 254 (255 marks ignored pixels).")
    if not np.all(np.isfinite(maps)):
        raise DataError("the CAMs contain NaN or infinite values; recompute them.")
    rgb = None
    if config.crf:
        if image is None or image.shape[:2] != maps.shape[1:]:
            raise DataError(f"the dense CRF needs the image, of the CAMs' size {maps.shape[1:]}.")
        require_crf()  # here, not only in a worker process: the error names the missing package
        rgb = to_rgb8(image)
    return rgb, maps, keys, (config.fg_threshold, config.bg_threshold)


def _combine(fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Foreground where confident at the high threshold, background where nothing passes the low one."""
    conf = fg.astype(np.uint8)
    conf[fg == 0] = IGNORE
    conf[(fg == 0) & (bg == 0)] = 0
    return conf
