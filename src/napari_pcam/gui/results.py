"""Results as layers: per-class heatmaps (Image, additive) and label maps (Labels), updated in place.

Result layers are found again by ``metadata['pcam_result']`` (source image, kind, class), so re-training
updates them instead of piling up new layers, even if the user renamed them. They copy the source
image's scale and translate (of its slice / row / column axes) so they stay aligned with it.

Previews are written into one array per layer (the layer's own data once it exists); :meth:`ResultTarget.flush`
turns them into layers. Adding a layer costs the GUI thread a few tens of milliseconds (vispy visual, layer
controls), so while training, the widget flushes on a timer and creates at most one new layer per flush,
and new layers do not take the layer selection away from the layer the user works on.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import Colormap, DirectLabelColormap
from qtpy.QtCore import QTimer

from ..core.data.cams import CamMaps
from ..core.progress import Progress
from .classes import rgba
from .convert import layer_array, spatial_axes

LABEL_STAGES = ("pcam labels", "refined", "final")
KEY = "pcam_result"
REDRAW_MS = 150


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
        self._arrays: dict[str, np.ndarray] = {}  # kind -> the data written (the layer's data once shown)
        self._specs: dict[str, tuple[bool, dict]] = {}  # kind -> (is a Labels layer, layer keyword arguments)
        self._layers: dict[str, Layer] = {}
        self._dirty: list[str] = []

    @property
    def is_stack(self) -> bool:
        """True for a 3D stack (results have a leading slice axis)."""
        return len(self.shape) == 3

    @property
    def pending(self) -> bool:
        """True while some written result is not on screen yet (call :meth:`flush`)."""
        return bool(self._dirty)

    def show(self, progress: Progress) -> str | None:
        """Write the preview of a progress record; returns the kind of result written (or None)."""
        index = max(progress.step - 1, 0)
        if isinstance(progress.preview, CamMaps):
            return self.show_cams(progress.preview, index)
        if isinstance(progress.preview, np.ndarray) and progress.stage in LABEL_STAGES:
            return self.show_labels(progress.stage, progress.preview, index)
        return None

    def show_cams(self, cams: CamMaps, index: int) -> str:
        """Write the CAMs of image ``index`` into one heatmap per foreground class."""
        dense = cams.dense(len(self.class_names) - 1)
        kind = ""
        for c, name in enumerate(self.class_names[1:], start=1):
            kind = f"pcam {name}"
            self._write(kind, np.float32, False, self._heatmap_kwargs(c), index, dense[c - 1])
        return kind

    def show_labels(self, stage: str, labels: np.ndarray, index: int) -> str:
        """Write the label map of image ``index`` into the Labels layer of ``stage``."""
        kwargs = {"colormap": self.label_colormap(), "opacity": 0.6}
        self._write(stage, np.uint8, True, kwargs, index, labels)
        return stage

    def layer(self, kind: str) -> Layer | None:
        """The layer of a result kind ('pcam <class>', 'refined', ...), once flushed."""
        return self._layers.get(kind)

    def label_colormap(self) -> DirectLabelColormap:
        """Class id -> class colour; background (0) and unknown ids transparent."""
        color_dict = {None: np.zeros(4, np.float32), 0: np.zeros(4, np.float32)}
        color_dict.update({i: rgba(c) for i, c in enumerate(self.colors) if i > 0})
        return DirectLabelColormap(color_dict=color_dict)

    def _heatmap_kwargs(self, c: int) -> dict:
        r, g, b, _ = rgba(self.colors[c])
        name = f"pcam {self.class_names[c]} {self.colors[c]}"
        cmap = Colormap(colors=[[0, 0, 0, 1], [r, g, b, 1]], name=name)
        # Fixed contrast limits: CAMs lie in [0, 1], and napari need not scan the data for its range.
        return {"colormap": cmap, "blending": "additive", "contrast_limits": (0.0, 1.0)}

    def _write(self, kind: str, dtype, labels_layer: bool, kwargs: dict, index: int, plane: np.ndarray) -> None:
        array = self._arrays.get(kind)
        if array is None:
            array = self._arrays[kind] = self._reuse(kind, dtype, kwargs)
            self._specs[kind] = (labels_layer, kwargs)
        if self.is_stack:
            array[index] = plane
        else:
            array[...] = plane
        if kind not in self._dirty:
            self._dirty.append(kind)
        if not self.deferred:
            self.flush()

    def _reuse(self, kind: str, dtype, kwargs: dict) -> np.ndarray:
        """The data array of an existing result layer of this kind (made to fit), or a new array."""
        key = f"{self.image_name}|{kind}"
        for layer in self.viewer.layers:
            if layer.metadata.get(KEY) == key:
                if layer.data.shape != self.shape or layer.data.dtype != dtype:
                    layer.data = np.zeros(self.shape, dtype)
                for name, value in kwargs.items():
                    setattr(layer, name, value)
                self._layers[kind] = layer
                return layer.data
        return np.zeros(self.shape, dtype)

    def flush(self, max_new: int | None = None) -> None:
        """Show what was written since the last flush: refresh existing layers, add missing ones.

        Args:
            max_new: Add at most this many new layers now (the rest at the next flush); None adds all.
        """
        dirty, self._dirty = self._dirty, []
        added = 0
        for kind in dirty:
            layer = self._layers.get(kind)
            if layer is not None and layer in self.viewer.layers:
                layer.refresh()
            elif max_new is None or added < max_new:
                self._layers[kind] = self._add_layer(kind)
                added += 1
            else:
                self._dirty.append(kind)

    def _add_layer(self, kind: str) -> Layer:
        labels_layer, kwargs = self._specs[kind]
        data = self._arrays[kind]
        common = {"name": f"{self.image_name} {kind}", "scale": self.scale, "translate": self.translate,
                  "metadata": {KEY: f"{self.image_name}|{kind}"}}
        layer = Labels(data, **common, **kwargs) if labels_layer else Image(data, **common, **kwargs)
        with _keep_selection(self.viewer):
            self.viewer.add_layer(layer)
        return layer


class Redrawer:
    """Shows a :class:`ResultTarget`'s previews on a timer while a worker runs, one new layer per tick.

    Args:
        parent: Qt parent of the timer (the widget).
        interval_ms: Time between redraws.
    """

    def __init__(self, parent, interval_ms: int = REDRAW_MS):
        self.target: ResultTarget | None = None
        self.running = False
        self.timer = QTimer(parent)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    @property
    def busy(self) -> bool:
        """True while the worker runs or some of its results are not on screen yet."""
        return self.running or (self.target is not None and self.target.pending)

    def start(self, target: ResultTarget) -> None:
        """Defer ``target``'s redraws to the timer (call when the worker starts)."""
        if self.target is not None and self.target is not target:
            self.target.flush()  # what an earlier run left to show
        target.deferred = True
        self.target, self.running = target, True
        self.timer.start()

    def finish(self) -> None:
        """The worker ended: the timer stops once the last results are shown."""
        self.running = False

    def _tick(self) -> None:
        if self.target is not None:
            self.target.flush(max_new=1)
        if not self.busy:
            self.timer.stop()


@contextmanager
def _keep_selection(viewer):
    """Add layers without making them the active layer (the user keeps clicking points meanwhile)."""
    layers = viewer.layers
    before = getattr(layers, "_activate_on_insert", None)
    if before is not None:
        layers._activate_on_insert = False
    try:
        yield
    finally:
        if before is not None:
            layers._activate_on_insert = before


def find_results(viewer, image_name: str) -> list[Layer]:
    """Result layers made for the image layer called ``image_name``."""
    return [lay for lay in viewer.layers if str(lay.metadata.get(KEY, "")).startswith(f"{image_name}|")]
