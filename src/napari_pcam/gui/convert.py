"""Layers -> core data: an Image layer to an :class:`ImageStack`, a Points layer to :class:`PointAnnotations`.

Thin on purpose: the checks of the points against the images are core's (``PointAnnotations.validate``).
Only what is napari-specific lives here: which layer types are images, how a layer's axes map to
slices / rows / columns / channels, and how points in another layer's coordinates map onto the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image, Labels, Layer, Points

from ..core.data.images import ImageStack
from ..core.data.points import PointAnnotations, read_points_csv, write_points_csv
from ..core.errors import DataError
from .classes import class_ids, get_classes


def layer_data(layer: Layer):
    """The full-resolution data of a layer as it is stored (level 0 of a multiscale layer): a numpy, dask or
    zarr array; nothing is read."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_array(layer: Layer, lazy: bool = False):
    """The full-resolution data of a layer as a numpy array, or with ``lazy`` as a numpy or dask array:
    a dask array stays one and any other array (zarr, a memory map) becomes a dask array over it, so that
    only the parts that are sliced are ever read."""
    data = layer_data(layer)
    if not lazy or isinstance(data, np.ndarray):
        return np.asarray(data)
    import dask.array as da  # a napari dependency

    return data if isinstance(data, da.Array) else da.from_array(data, chunks=getattr(data, "chunks", "auto"))


def spatial_axes(layer: Image, channel_axis: int | None) -> list[int]:
    """Layer axes that are slice / row / column (the RGB axis and the channel axis excluded)."""
    ndim = layer.ndim  # napari's ndim excludes the RGB axis
    axes = list(range(ndim))
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise DataError(f"channel axis {channel_axis} does not exist in layer {layer.name!r} ({ndim} axes).")
        axes.remove(channel_axis % ndim)
    return axes


def image_stack(layer: Layer, channel_axis: int | None = None, lazy: bool = False) -> ImageStack:
    """The images of a layer: one for a 2D layer, one per leading index for a 3D stack.

    With ``lazy``, a layer whose data is not a numpy array (dask, zarr) is not converted: its images are
    dask views, read only where they are sliced (tile by tile when a model segments them).

    Raises:
        DataError: a Labels layer or any non-image layer, or an image of unsupported dimensionality.
    """
    if isinstance(layer, Labels):
        raise DataError(
            f"layer {layer.name!r} is a Labels layer (a segmentation), not an image; choose the image it belongs to."
        )
    if not isinstance(layer, Image):
        raise DataError(f"layer {layer.name!r} is a {type(layer).__name__} layer, not an image.")
    data = layer_array(layer, lazy)
    if channel_axis is not None:
        spatial_axes(layer, channel_axis)  # checks the axis
        channel_axis = channel_axis % layer.ndim
    return ImageStack.from_array(data, rgb=bool(layer.rgb), channel_axis=channel_axis, lazy=lazy)


def points_to_image(points: Points, image: Image, channel_axis: int | None = None) -> np.ndarray:
    """float64 (N, D) point coordinates in the image layer's data coordinates (scale/translate only).

    Raises:
        DataError: the points layer has another number of axes than the image.
    """
    axes = spatial_axes(image, channel_axis)
    if points.ndim != image.ndim:
        raise DataError(
            f"points layer {points.name!r} has {points.ndim} axes but image {image.name!r} has {image.ndim}; "
            "it belongs to another image. Pick the matching points layer or create a new one for this image."
        )
    world = points.data * points.scale + points.translate
    data = (world - image.translate) / image.scale
    return data[:, axes]


def points_from_layers(
    points: Points, image: Image, stack: ImageStack, channel_axis: int | None = None
) -> PointAnnotations:
    """Point annotations (image index, y, x, class) of a points layer drawn on ``image``; validated by core."""
    names, _ = get_classes(points)
    coords = points_to_image(points, image, channel_axis)
    if coords.shape[1] == 3:
        index = np.round(coords[:, 0]).astype(np.int64)
        yx = coords[:, 1:]
    else:
        index = np.zeros(len(coords), np.int64)
        yx = coords
    annotations = PointAnnotations(index, yx, class_ids(points, names), names)
    annotations.validate(stack.shapes, stack.names)
    return annotations


def layers_to_data(image: Layer, points: Points | None, channel_axis: int | None = None):
    """(ImageStack, PointAnnotations) of an image layer and its points layer, checked by core.

    Raises:
        DataError: with a message for the user (no points layer, wrong layer type, points elsewhere, ...).
    """
    stack = image_stack(image, channel_axis)
    if points is None:
        raise DataError("choose a points layer with clicked points (or create one in the annotation widget).")
    if len(points.data) == 0:
        raise DataError(f"points layer {points.name!r} has no points: click at least one object of each class.")
    return stack, points_from_layers(points, image, stack, channel_axis)


def save_points(path: str | Path, points: Points, image: Image, channel_axis: int | None = None) -> int:
    """Write a points layer as ``image,y,x,class`` CSV (image = slice name); returns the number of points."""
    stack = image_stack(image, channel_axis)
    names, _ = get_classes(points)
    coords = points_to_image(points, image, channel_axis)
    index = np.round(coords[:, 0]).astype(np.int64) if coords.shape[1] == 3 else np.zeros(len(coords), np.int64)
    annotations = PointAnnotations(index, coords[:, -2:], class_ids(points, names), names)
    write_points_csv(path, annotations, stack.names)
    return len(annotations)


def read_points(path: str | Path, image: Image, class_names=None, channel_axis: int | None = None):
    """(data (N, D) in the image layer's data coordinates, class names per point, class names) from CSV.

    Reads both ``image,y,x,class`` and napari's own Points CSV; the points are checked by core.
    """
    stack = image_stack(image, channel_axis)
    ann = read_points_csv(path, stack.names, class_names)
    _check_positions(ann, stack)
    ndim_stack = len(spatial_axes(image, channel_axis)) == 3
    coords = np.column_stack([ann.image, ann.yx]) if ndim_stack else ann.yx
    if channel_axis is not None:  # put a 0 at the channel axis so the layer has the image's axes
        coords = np.insert(coords, channel_axis % image.ndim, 0.0, axis=1)
    labels = np.array([ann.class_names[c] for c in ann.cls], dtype=object)
    return coords.astype(float), labels, list(ann.class_names)


def _check_positions(ann: PointAnnotations, stack: ImageStack) -> None:
    """Core's checks of the loaded points, ignoring declared classes that have no point (yet)."""
    fg = np.unique(ann.cls[ann.cls > 0])
    if not len(fg):
        return
    lut = np.zeros(len(ann.class_names), np.int64)
    lut[fg] = np.arange(1, len(fg) + 1)
    names = [ann.class_names[0], *(ann.class_names[c] for c in fg)]
    PointAnnotations(ann.image, ann.yx, lut[ann.cls], names).validate(stack.shapes, stack.names)
