"""Image stacks independent of napari: 2D grayscale, multichannel, RGB, and 3D stacks as 2D slices.

Every image is stored as ``H x W x C`` (C >= 1) in its original dtype; all images of a stack share the
channel count. :func:`image_to_tensor` turns one into the normalised ``float32, C x H x W`` network input.

A stack may hold its images in memory (a list) or read them on access (:class:`LazyImages`, e.g. the
10,582 JPEGs of VOC ``train_aug``): the stages only index ``stack.images[i]`` one image at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from ..normalisation import IMAGENET_MEAN, IMAGENET_STD
from .stacks import is_array_like, layout


class LazyImages(Sequence):
    """Images read one at a time on access; their sizes and channel count are known without decoding.

    Args:
        read: ``read(i)`` returns image ``i`` as ``H x W`` or ``H x W x C``.
        shapes: (H, W) of every image.
        channels: Channel count of every image.
        key: A stable description of the content (e.g. paths, sizes and modification times of the files):
            run folders fingerprint a lazy stack by it instead of hashing every pixel.
        materialise: Return every image as a numpy array (True), or as what ``read`` returns, e.g. a dask
            array that is read only where it is sliced (False: for the tiled prediction of large images).
    """

    def __init__(self, read: Callable[[int], np.ndarray], shapes: Sequence[tuple[int, int]], channels: int, key: str,
                 indices: Sequence[int] | None = None, materialise: bool = True):
        self._read, self._shapes, self.channels, self.key = read, list(shapes), int(channels), key
        self._indices = list(range(len(self._shapes))) if indices is None else list(indices)
        self.materialise = materialise

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        j = self._indices[i]
        img = self._read(j)
        img = np.asarray(img) if self.materialise else img
        img = img[..., None] if img.ndim == 2 else img
        if img.shape != (*self._shapes[j], self.channels):
            raise DataError(f"image {j} reads as {img.shape}, expected {(*self._shapes[j], self.channels)}; "
                            "did the file change during the run?")
        return img

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [tuple(self._shapes[j]) for j in self._indices]

    def subset(self, indices: Sequence[int]) -> "LazyImages":
        """The images at ``indices``, still read on access."""
        return LazyImages(self._read, self._shapes, self.channels, self.key, [self._indices[i] for i in indices],
                          self.materialise)

    def __repr__(self) -> str:  # what fingerprint() hashes
        return f"LazyImages({self.key!r}, {self._indices!r})"


@dataclass
class ImageStack:
    """A list of 2D images with a common channel count.

    Attributes:
        images: Arrays ``H x W x C`` (sizes may differ between images), or :class:`LazyImages`.
        names: One name per image (file name, ``cells_z003.tif`` for slice 3 of the file ``cells.tif``, or
            ``slice_0003`` for slices of an array).
        sources: (file name, slice index or None for a 2D file) of every image, where known (empty otherwise):
            a points CSV addresses slices by them (``image,z,y,x,class``), ``segment`` writes stacks back.
    """

    images: list[np.ndarray] | LazyImages
    names: list[str] = field(default_factory=list)
    sources: list[tuple[str, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.images, LazyImages):
            self._check_lazy()
            return
        if not self.images:
            raise DataError("the image stack is empty: give at least one image.")
        if not self.names:
            self.names = [f"image_{i:04d}" for i in range(len(self.images))]
        if len(self.names) != len(self.images):
            raise DataError(f"{len(self.names)} names for {len(self.images)} images.")
        if self.sources and len(self.sources) != len(self.images):
            raise DataError(f"{len(self.sources)} sources for {len(self.images)} images.")
        if len(set(self.names)) != len(self.names):
            raise DataError("image names must be unique.")
        fixed = []
        for name, img in zip(self.names, self.images):
            img = np.asarray(img)
            if img.ndim == 2:
                img = img[..., None]
            if img.ndim != 3:
                raise DataError(
                    f"image {name!r} has shape {img.shape}; expected H x W (grayscale) or H x W x C."
                )
            if img.shape[0] < 16 or img.shape[1] < 16:
                raise DataError(f"image {name!r} is {img.shape[0]} x {img.shape[1]} px; at least 16 x 16 is needed.")
            fixed.append(img)
        channels = {img.shape[2] for img in fixed}
        if len(channels) > 1:
            counts = {n: img.shape[2] for n, img in zip(self.names, fixed)}
            raise DataError(
                f"images have different channel counts {sorted(channels)} ({_first_per_value(counts)}); "
                "convert them to one channel layout (e.g. all RGB or all grayscale) before training."
            )
        self.images = fixed

    def _check_lazy(self) -> None:
        if not len(self.images):
            raise DataError("the image stack is empty: give at least one image.")
        self.names = list(self.names) or [f"image_{i:04d}" for i in range(len(self.images))]
        if len(self.names) != len(self.images) or len(set(self.names)) != len(self.names):
            raise DataError(f"{len(self.images)} images need as many unique names, got {len(self.names)} "
                            f"({len(set(self.names))} unique).")
        for name, (h, w) in zip(self.names, self.images.shapes):
            if h < 16 or w < 16:
                raise DataError(f"image {name!r} is {h} x {w} px; at least 16 x 16 is needed.")

    @property
    def lazy(self) -> bool:
        """True when the images are read from their files on access."""
        return isinstance(self.images, LazyImages)

    @property
    def channels(self) -> int:
        """Number of channels shared by all images."""
        if self.lazy:
            return self.images.channels
        return self.images[0].shape[2]

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(H, W) of every image."""
        if self.lazy:
            return self.images.shapes
        return [img.shape[:2] for img in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> "ImageStack":
        """The images at ``indices`` (the stack itself when that is all of them); lazy stacks stay lazy."""
        indices = list(indices)
        if indices == list(range(len(self))):
            return self
        names = [self.names[i] for i in indices]
        sources = [self.sources[i] for i in indices] if self.sources else []
        if self.lazy:
            return ImageStack(self.images.subset(indices), names, sources)
        return ImageStack([self.images[i] for i in indices], names, sources)

    @classmethod
    def from_array(cls, data: np.ndarray, *, rgb: bool = False, channel_axis: int | None = None,
                   lazy: bool = False) -> "ImageStack":
        """Build from a napari-style array, by the stack/channel rule of :mod:`.stacks` with explicit axes.

        Args:
            data: ``H x W`` (2D), ``H x W x 3/4`` with ``rgb=True``, ``Z x H x W`` (a stack of 2D slices),
                ``Z x H x W x 3`` with ``rgb=True``, or any of these with a channel axis.
            rgb: The last axis holds RGB(A) colour (only the first three channels are used).
            channel_axis: Axis holding channels (multichannel images); otherwise a third axis before
                rows and columns is the slice axis.
            lazy: Keep an array that is not a numpy array (a dask array, a memory map) as it is: the images
                are views of it, read only where they are sliced (e.g. tile by tile by
                :func:`~napari_pcam.core.stages.segmentation_inference.predict_labels`).
        """
        lazy = lazy and not isinstance(data, np.ndarray) and is_array_like(data)
        data = data if lazy else np.asarray(data)
        if rgb:
            data, channel_axis = data[..., :3], -1
        spatial = data.ndim - (channel_axis is not None)
        if spatial not in (2, 3):
            raise DataError(
                f"cannot use an image with {spatial} spatial dimensions; napari-pcam works on 2D images and on "
                "3D stacks treated as 2D slices."
            )
        stack_axis = None
        if spatial == 3 and channel_axis is None:
            stack_axis = 0
        lay = layout(data.shape, stack_axis=stack_axis, channel_axis=channel_axis, source="the image layer")
        slices = lay.split(data)
        names = ["image_0000"] if lay.stack is None else [f"slice_{i:04d}" for i in range(len(slices))]
        if lazy:
            key = f"{type(data).__name__} {getattr(data, 'name', id(data))} {tuple(data.shape)}"
            images = LazyImages(slices.__getitem__, [tuple(slices.shape[1:3])] * len(names), slices.shape[3], key,
                                materialise=False)
            return cls(images, names)
        return cls(list(slices), names)


def _first_per_value(counts: dict[str, int]) -> str:
    seen: dict[int, str] = {}
    for name, c in counts.items():
        seen.setdefault(c, name)
    return ", ".join(f"{n!r} has {c}" for c, n in seen.items())


PERCENTILES = (0.5, 99.5)
# Images of more values than this (of a type without an exact histogram: floats, 32/64-bit integers) get
# their percentiles from an evenly strided subsample of about this many values instead of all of them.
EXACT_VALUES = 1 << 25


def normalise_image(img: np.ndarray, value_range: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Scale an ``H x W x C`` image to float32 in [0, 1].

    uint8 images are divided by 255; any other dtype is scaled per channel between its 0.5 and 99.5
    percentiles (robust for 12/16-bit microscopy), then clipped. ``value_range``: those per-channel
    (low, high) values computed beforehand (:func:`value_range` of the whole image), so that a tile of a
    large image is scaled exactly as the whole image would be.
    """
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    lo, hi = value_range if value_range is not None else value_range_of(img)
    return np.clip((img - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


def value_range_of(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (0.5, 99.5) percentiles of an in-memory float32 ``H x W x C`` image, (1, 1, C) each."""
    lo = np.percentile(img, PERCENTILES[0], axis=(0, 1), keepdims=True)
    hi = np.percentile(img, PERCENTILES[1], axis=(0, 1), keepdims=True)
    return lo, hi


def value_range(image, band_rows: int = 256) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (low, high) of :func:`normalise_image` for an image of any size, read in row bands.

    ``image`` is any ``H x W x C`` array that slices like numpy (a memory-mapped TIFF, a dask array);
    only ``band_rows`` rows are in memory at a time. 8/16-bit integer images get the exact percentiles
    of the whole image (from a histogram: the same values as :func:`numpy.percentile`); other types the
    exact ones up to :data:`EXACT_VALUES` values and above that those of a strided subsample. Returns
    None for uint8 images (divided by 255, no range needed).
    """
    dtype = np.dtype(image.dtype)
    if dtype == np.uint8:
        return None
    h, w, c = image.shape
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        offset = int(np.iinfo(dtype).min)
        bins = 1 << (8 * dtype.itemsize)
        counts = np.zeros((c, bins), np.int64)
        for y in range(0, h, max(1, band_rows)):
            band = np.asarray(image[y : y + band_rows]).reshape(-1, c).astype(np.int64) - offset
            for k in range(c):
                counts[k] += np.bincount(band[:, k], minlength=bins)
        values = np.arange(bins, dtype=np.float32) + np.float32(offset)
        lo = [_histogram_percentile(counts[k], values, PERCENTILES[0]) for k in range(c)]
        hi = [_histogram_percentile(counts[k], values, PERCENTILES[1]) for k in range(c)]
        return (np.asarray(lo, np.float32).reshape(1, 1, c), np.asarray(hi, np.float32).reshape(1, 1, c))
    step = max(1, int(np.ceil(np.sqrt(h * w * c / EXACT_VALUES))))
    rows = max(step, band_rows // step * step)  # band starts stay on the subsample's rows
    sample = np.concatenate([np.asarray(image[y : y + rows : step, ::step]) for y in range(0, h, rows)])
    return value_range_of(sample.astype(np.float32))


def _histogram_percentile(counts: np.ndarray, values: np.ndarray, q: float) -> np.float32:
    """numpy.percentile's default (linear) estimate of the ``q`` percentile of the values a histogram
    counts: the order statistics at ``q / 100 * (n - 1)`` and the next one, interpolated as numpy does."""
    n = int(counts.sum())
    position = np.float64(q) / 100 * (n - 1)
    below = int(np.floor(position))
    cumulative = np.cumsum(counts)
    a = values[np.searchsorted(cumulative, below, side="right")]
    b = values[np.searchsorted(cumulative, min(below + 1, n - 1), side="right")]
    t = np.float32(position - below)
    return np.float32(b - (b - a) * (1 - t)) if t >= 0.5 else np.float32(a + (b - a) * t)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """``H x W`` or ``H x W x C`` image -> contiguous uint8 ``H x W x 3`` (the dense CRF's colour term).

    Normalised as for the networks; one channel is repeated, two get the first again as the third, and
    only the first three of more channels are kept.
    """
    img = normalise_image(image if image.ndim == 3 else image[..., None])
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 2:
        img = np.concatenate([img, img[..., :1]], axis=2)
    return np.ascontiguousarray((img[..., :3] * 255).round().astype(np.uint8))


def image_to_tensor(img: np.ndarray, value_range: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """``H x W x C`` image -> normalised float32 ``C x H x W`` tensor.

    RGB images get ImageNet's mean and std; other channel counts the mean of those values per channel.
    ``value_range``: as in :func:`normalise_image` (for a tile of a larger image).
    """
    x = normalise_image(img, value_range)
    c = x.shape[2]
    if c == 3:
        mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    else:
        mean = np.full(c, np.mean(IMAGENET_MEAN), np.float32)
        std = np.full(c, np.mean(IMAGENET_STD), np.float32)
    x = (x - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
