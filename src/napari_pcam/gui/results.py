"""Results as layers: per-class heatmaps (Image, additive) and label maps (Labels), updated in place.

Result layers are found again by ``metadata['pcam_result']`` (source image, kind, class), so re-training
updates them instead of piling up new layers, even if the user renamed them. They copy the source
image's scale and translate (of its slice / row / column axes) so they stay aligned with it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from napari.layers import Image, Layer
from napari.utils.colormaps import Colormap, DirectLabelColormap

from ..core.data.cams import CamMaps
from ..core.progress import Progress
from .classes import rgba
from .convert import layer_array, spatial_axes

LABEL_STAGES = ("pcam labels", "refined", "final")
KEY = "pcam_result"


class ResultTarget:
    """Where results of one image layer go: its viewer, geometry and the classes with their colours.

    Args:
        viewer: The napari viewer.
        image: The source Image layer.
        class_names: Class names, background first.
        colors: Hex colour per class.
        channel_axis: The image's channel axis, if any (not a spatial axis of the results).
    """

    def __init__(self, viewer, image: Image, class_names: Sequence[str], colors: Sequence[str],
                 channel_axis: int | None = None):
        self.viewer = viewer
        self.image_name = image.name
        self.class_names = list(class_names)
        self.colors = list(colors)
        axes = spatial_axes(image, channel_axis)
        data_shape = layer_array(image).shape
        self.shape = tuple(data_shape[a] for a in axes)
        self.scale = np.asarray(image.scale)[axes]
        self.translate = np.asarray(image.translate)[axes]
        self.deferred = False
        self._dirty: list[Layer] = []

    @property
    def is_stack(self) -> bool:
        """True for a 3D stack (results have a leading slice axis)."""
        return len(self.shape) == 3

    def show(self, progress: Progress) -> Layer | None:
        """Put the preview of a progress record into layers; returns the layer touched (or None)."""
        index = max(progress.step - 1, 0)
        if isinstance(progress.preview, CamMaps):
            return self.show_cams(progress.preview, index)
        if isinstance(progress.preview, np.ndarray) and progress.stage in LABEL_STAGES:
            return self.show_labels(progress.stage, progress.preview, index)
        return None

    def show_cams(self, cams: CamMaps, index: int) -> Layer:
        """Write the CAMs of image ``index`` into one heatmap layer per foreground class."""
        dense = cams.dense(len(self.class_names) - 1)
        layer = None
        for c, name in enumerate(self.class_names[1:], start=1):
            layer = self._layer(f"pcam {name}", np.float32, self._heatmap_kwargs(c))
            self._write(layer, index, dense[c - 1])
        return layer

    def show_labels(self, stage: str, labels: np.ndarray, index: int) -> Layer:
        """Write the label map of image ``index`` into the Labels layer of ``stage``."""
        kwargs = {"colormap": self.label_colormap(), "opacity": 0.6}
        layer = self._layer(stage, np.uint8, kwargs, labels_layer=True)
        self._write(layer, index, labels)
        return layer

    def label_colormap(self) -> DirectLabelColormap:
        """Class id -> class colour; background (0) and unknown ids transparent."""
        color_dict = {None: np.zeros(4, np.float32), 0: np.zeros(4, np.float32)}
        color_dict.update({i: rgba(c) for i, c in enumerate(self.colors) if i > 0})
        return DirectLabelColormap(color_dict=color_dict)

    def _heatmap_kwargs(self, c: int) -> dict:
        r, g, b, _ = rgba(self.colors[c])
        name = f"pcam {self.class_names[c]} {self.colors[c]}"
        cmap = Colormap(colors=[[0, 0, 0, 1], [r, g, b, 1]], name=name)
        return {"colormap": cmap, "blending": "additive", "contrast_limits": (0.0, 1.0)}

    def _layer(self, kind: str, dtype, kwargs: dict, labels_layer: bool = False) -> Layer:
        key = f"{self.image_name}|{kind}"
        for layer in self.viewer.layers:
            if layer.metadata.get(KEY) == key:
                if layer.data.shape != self.shape or layer.data.dtype != dtype:
                    layer.data = np.zeros(self.shape, dtype)
                for name, value in kwargs.items():
                    setattr(layer, name, value)
                return layer
        data = np.zeros(self.shape, dtype)
        common = {"name": f"{self.image_name} {kind}", "scale": self.scale, "translate": self.translate,
                  "metadata": {KEY: key}}
        if labels_layer:
            return self.viewer.add_labels(data, **common, **kwargs)
        return self.viewer.add_image(data, **common, **kwargs)

    def _write(self, layer: Layer, index: int, plane: np.ndarray) -> None:
        if self.is_stack:
            layer.data[index] = plane
        else:
            layer.data[...] = plane
        if layer not in self._dirty:
            self._dirty.append(layer)
        if not self.deferred:
            self.flush()

    def flush(self) -> None:
        """Redraw the layers written since the last flush (with ``deferred``, call this on a timer)."""
        dirty, self._dirty = self._dirty, []
        for layer in dirty:
            layer.refresh()


def find_results(viewer, image_name: str) -> list[Layer]:
    """Result layers made for the image layer called ``image_name``."""
    return [lay for lay in viewer.layers if str(lay.metadata.get(KEY, "")).startswith(f"{image_name}|")]
