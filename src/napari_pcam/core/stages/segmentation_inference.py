"""Applying a trained DeepLabv3+ (or any network that maps images to class logits) to images of any size:
overlapping tiles (:mod:`napari_pcam.core.tiling`), test-time scales and flips (DeepLab's multi-scale test,
Chen et al., ECCV 2018) and an optional dense CRF (:mod:`napari_pcam.core.crf`). Training is in
:mod:`napari_pcam.core.stages.segmentation`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import DeepLabConfig
from ..crf import crf_map, crf_probabilities, require_crf
from ..data.images import image_to_tensor, to_rgb8, value_range
from ..device import autocast, resolve_device
from ..errors import DataError
from ..tiling import sliding_window, sliding_window_argmax


def inference_settings(config: DeepLabConfig) -> dict:
    """The tiling and test-time arguments of :func:`predict` that ``config`` sets."""
    return {"tile_size": config.tile_size, "tile_overlap": config.tile_overlap, "batch": config.batch_tiles,
            "scales": config.test_scales, "flip": config.test_flip}


def predict_many(
    model: nn.Module, images: Iterable[np.ndarray], config: DeepLabConfig, *, device: str | torch.device = "cpu",
    amp: bool = True, crf_workers: int = 0,
) -> Iterator[np.ndarray]:
    """:func:`predict` of every image with the settings of ``config`` (tiling, test time, CRF), in order
    (consumed lazily).

    With ``config.crf`` and ``crf_workers`` > 0 the dense CRF runs in that many worker processes (the
    labels are the same): its C++ code holds the GIL, so only there it stalls neither the network nor a
    viewer's event loop.
    """
    settings = inference_settings(config)
    if not config.crf or crf_workers <= 0:
        for image in images:
            yield predict(model, image, device=device, amp=amp, crf=config.crf, **settings)
        return
    require_crf("deeplab.crf")
    jobs = (_crf_job(model, image, device=device, amp=amp, **settings) for image in images)
    yield from crf_map(crf_probabilities, jobs, crf_workers)


def predict_many_with_and_without_crf(
    model: nn.Module, images: Iterable[np.ndarray], config: DeepLabConfig, *, device: str | torch.device = "cpu",
    amp: bool = True, crf_workers: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(labels without the CRF, labels with it)`` of every image, in order, from one pass of the network
    per image (the argmax of the class probabilities the CRF refines); the CRF in ``crf_workers`` processes
    as in :func:`predict_many`. For ``deeplab.crf_check``: which of the two the clicks prefer."""
    require_crf("deeplab.crf")
    settings = inference_settings(config)
    plain: deque[np.ndarray] = deque()

    def jobs():
        for image in images:
            job = _crf_job(model, image, device=device, amp=amp, **settings)
            plain.append(job[1].argmax(0).astype(np.uint8))
            yield job

    refined = (crf_probabilities(*job) for job in jobs()) if crf_workers <= 0 else crf_map(
        crf_probabilities, jobs(), crf_workers)
    for labels in refined:  # a job is made (and its plain labels queued) before its CRF labels come back
        yield plain.popleft(), labels


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    image: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    tile_size: int = 1024,
    tile_overlap: int = 256,
    batch: int = 4,
    amp: bool = True,
) -> torch.Tensor:
    """Class scores of one image: float32 K x H x W logits (averaged over overlapping tiles).

    Args:
        model: Maps float32 B x C x h x w to logits B x K x h x w (moved to ``device``, set to eval mode).
        image: ``H x W x C`` image of any size (at least 16 x 16).
        device: Where to compute; the result is on the CPU.
        tile_size: Images larger than this in either dimension are processed in overlapping tiles.
        tile_overlap: Overlap of neighbouring tiles in pixels.
        batch: Tiles per forward pass.
        amp: Mixed precision on CUDA.
    """
    x, run = _prepare(model, image, device, amp)
    return sliding_window(run, x, tile_size=tile_size, overlap=tile_overlap, batch=batch).cpu()


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    image: np.ndarray,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    device: str | torch.device = "cpu",
    tile_size: int = 1024,
    tile_overlap: int = 256,
    batch: int = 4,
    amp: bool = True,
) -> torch.Tensor:
    """Class probabilities of one image (float32 K x H x W), averaged over test-time scales and flips.

    DeepLab's multi-scale test: the image is resized by every scale (at least 16 px a side), each pass's
    softmax is resized back and averaged, with the horizontally flipped image too when ``flip``.
    Other arguments as in :func:`predict_logits`.
    """
    x, run = _prepare(model, image, device, amp)
    h, w = x.shape[1:]
    total = None
    for scale in scales:
        size = (max(16, round(h * scale)), max(16, round(w * scale)))
        xs = x if size == (h, w) else F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        for flipped in (False, True) if flip else (False,):
            logits = sliding_window(run, xs.flip(-1) if flipped else xs, tile_size=tile_size, overlap=tile_overlap,
                                    batch=batch).float()
            if flipped:
                logits = logits.flip(-1)
            if size != (h, w):
                logits = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            probs = logits.softmax(0)
            total = probs if total is None else total + probs
    return (total / (len(scales) * (2 if flip else 1))).cpu()


def _prepare(model: nn.Module, image: np.ndarray, device: str | torch.device, amp: bool):
    """(image tensor C x H x W on the device, tile runner) after checking the image's channels."""
    dev = resolve_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    image = np.asarray(image)
    x = image_to_tensor(image if image.ndim == 3 else image[..., None]).to(dev)
    expected = getattr(model, "in_channels", x.shape[0])
    if x.shape[0] != expected:
        raise DataError(f"the image has {x.shape[0]} channel(s), but the model was trained on {expected}.")

    def run(tiles: torch.Tensor) -> torch.Tensor:
        with autocast(dev, amp):
            return model(tiles)

    return x, run


def predict(
    model: nn.Module,
    image: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    tile_size: int = 1024,
    tile_overlap: int = 256,
    batch: int = 4,
    amp: bool = True,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crf: bool = False,
) -> np.ndarray:
    """Label map (uint8 H x W) of one ``H x W x C`` image: the argmax of :func:`predict_logits`, or of
    :func:`predict_probabilities` with test-time ``scales`` other than (1.0,) or ``flip``; with ``crf``,
    those probabilities refined by a dense CRF (:func:`~napari_pcam.core.crf.crf_probabilities`)."""
    kwargs = {"device": device, "tile_size": tile_size, "tile_overlap": tile_overlap, "batch": batch, "amp": amp}
    if crf:
        require_crf("deeplab.crf")
        return crf_probabilities(*_crf_job(model, image, scales=scales, flip=flip, **kwargs))
    if tuple(scales) == (1.0,) and not flip:
        return predict_labels(model, image, **kwargs)
    scores = predict_probabilities(model, image, scales=scales, flip=flip, **kwargs)
    return scores.argmax(0).numpy().astype(np.uint8)


@torch.no_grad()
def predict_labels(
    model: nn.Module,
    image,
    *,
    device: str | torch.device = "cpu",
    tile_size: int = 1024,
    tile_overlap: int = 256,
    batch: int = 4,
    amp: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Label map (uint8 H x W) of one ``H x W x C`` (or ``H x W``) image in bounded memory.

    The labels of :func:`predict_logits` + argmax (the same tiles, sums and batches,
    :func:`~napari_pcam.core.tiling.sliding_window_argmax`), but the image is read tile by tile, so it can
    be any array that slices like numpy (a memory-mapped TIFF, a dask or zarr array), and only a band of
    scores a tile high is held: a 10,000 x 10,000 RGB image never becomes one float tensor (1.2 GB) with
    its K x H x W scores (0.4 GB per class). Images of other types than uint8 are scaled by percentiles of
    the whole image (:func:`~napari_pcam.core.data.images.value_range`, one pass in row bands before
    the tiles), exactly as the whole-image path scales them.

    Args:
        out: uint8 H x W array to write into (None = a new one). Other arguments as in :func:`predict_logits`.
    """
    if len(image.shape) not in (2, 3):
        raise DataError(f"predict_labels needs an H x W or H x W x C image, not one of shape {image.shape}.")
    dev = resolve_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    h, w = image.shape[:2]
    channels = image.shape[2] if len(image.shape) == 3 else 1
    expected = getattr(model, "in_channels", channels)
    if channels != expected:
        raise DataError(f"the image has {channels} channel(s), but the model was trained on {expected}.")

    scaling = value_range(image if len(image.shape) == 3 else _WithChannel(image))

    def read(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        tile = np.asarray(image[y0:y1, x0:x1])
        return image_to_tensor(tile if tile.ndim == 3 else tile[..., None], scaling).to(dev)

    def run(tiles: torch.Tensor) -> torch.Tensor:
        with autocast(dev, amp):
            return model(tiles)

    return sliding_window_argmax(run, read, (h, w), tile_size=tile_size, overlap=tile_overlap, batch=batch,
                                 out=out)


class _WithChannel:
    """An ``H x W`` array seen as ``H x W x 1`` (for :func:`value_range`, which slices rows and columns)."""

    def __init__(self, image):
        self.image, self.dtype, self.shape = image, image.dtype, (*image.shape, 1)

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.image[key])[..., None]


def _crf_job(model: nn.Module, image: np.ndarray, **kwargs) -> tuple:
    """Arguments of :func:`~napari_pcam.core.crf.crf_probabilities` for one image (colour image,
    probabilities of :func:`predict_probabilities` with ``kwargs``, the setting named in errors), run in
    this process or sent to a CRF worker."""
    probs = predict_probabilities(model, image, **kwargs)
    return to_rgb8(np.asarray(image)), probs.numpy(), "deeplab.crf"
