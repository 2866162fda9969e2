"""Results as layers: per-class heatmaps (Image, additive) and label maps (Labels), updated in place.

Result layers are found again by ``metadata['pcam_result']`` (source image, kind, class), so re-training
updates them instead of piling up new layers, even if the user renamed them. They copy the source
image's scale, translate, axis labels and units (of its slice / row / column axes), so they stay aligned
with it.

Previews are written into one array per layer (the layer's own data once it exists); :meth:`ResultTarget.flush`
turns them into layers. Adding a layer costs the GUI thread about 0.1 s under software OpenGL (llvmpipe):
about half in napari's add itself (vispy visual, layer controls widget, layer list) and half in the repaint
that follows it (the whole window, with every visible layer drawn again), and more while a training thread
competes for the GIL and the CPU. So:

* the training widget has the layers it expects made empty (:meth:`ResultTarget.prepare`) *before* the
  worker starts, then only refreshes them;
* :class:`Redrawer` adds at most one layer per timer tick, with the window's painting held back during that
  tick and let go at the next one, so that adding a layer and repainting never block the event loop together;
* a new Labels layer's editing tools (polygon, brush stroke: napari builds their visuals with the layer,
  about 35 ms) are switched off for the add and on again at ticks of their own;
* layers made before their first result are visible from the start (an empty heatmap adds black, an empty
  label map is transparent): their first draw, which compiles their shaders (60-120 ms under llvmpipe), then
  happens before the worker starts instead of in the middle of training. Each costs about 7 ms per repaint;
* new layers never take the layer selection away from the layer the user works on.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from functools import partial
from typing import Callable, Sequence

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import Colormap, DirectLabelColormap
from qtpy.QtCore import QTimer

from ..core.data.cams import CamMaps
from ..core.progress import Progress
from .classes import rgba
from .convert import layer_data, spatial_axes

LABEL_STAGES = ("pcam labels", "refined", "final")
KEY = "pcam_result"
REDRAW_MS = 150
PREPARE_MS = 20  # between the steps of adding layers one by one


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
        data_shape = layer_data(image).shape
        self.shape = tuple(data_shape[a] for a in axes)
        self.scale = np.asarray(image.scale)[axes]
        self.translate = np.asarray(image.translate)[axes]
        # napari 0.9 names the viewer's axes after the layers' axis labels: results carry their image's
        self.axis_labels = tuple(image.axis_labels[a] for a in axes)
        self.units = tuple(image.units[a] for a in axes)
        self.deferred = False
        self._arrays: dict[str, np.ndarray] = {}  # kind -> the data written (the layer's data once shown)
        self._specs: dict[str, tuple[bool, dict]] = {}  # kind -> (is a Labels layer, layer keyword arguments)
        self._layers: dict[str, Layer] = {}
        self._dirty: list[str] = []
        self._dirty_slices: dict[str, set[int]] = {}  # kind -> stack slices written since its last refresh
        self._tools: list = []  # Labels editing-tool overlays made invisible for the add, shown one per tick

    @property
    def is_stack(self) -> bool:
        """True for a 3D stack (results have a leading slice axis)."""
        return len(self.shape) == 3

    @property
    def pending(self) -> bool:
        """True while some written result is not on screen yet (call :meth:`flush`)."""
        return bool(self._dirty)

    @property
    def adding(self) -> bool:
        """True when the next :meth:`flush` adds a layer to the viewer."""
        return any(not self._on_screen(kind) for kind in self._dirty)

    @property
    def restoring(self) -> bool:
        """True while editing-tool overlays of new Labels layers wait to be turned back on."""
        return bool(self._tools)

    def restore_tool(self) -> bool:
        """Turn one deferred editing-tool overlay back on (napari builds its visual now); False if none."""
        while self._tools:
            overlay = self._tools.pop(0)
            try:
                overlay.visible = True
                return True
            except RuntimeError:  # its layer or the viewer is gone
                continue
        return False

    def _on_screen(self, kind: str) -> bool:
        layer = self._layers.get(kind)
        return layer is not None and layer in self.viewer.layers

    def show(self, progress: Progress) -> str | None:
        """Write the preview of a progress record; returns the kind of result written (or None)."""
        index = max(progress.step - 1, 0)
        if isinstance(progress.preview, CamMaps):
            return self.show_cams(progress.preview, index)
        if isinstance(progress.preview, np.ndarray) and progress.stage in LABEL_STAGES:
            return self.show_labels(progress.stage, progress.preview, index)
        return None

    def heatmap_kinds(self) -> list[str]:
        """Result kinds of the per-class heatmaps ('pcam <class>')."""
        return [f"pcam {name}" for name in self.class_names[1:]]

    def prepare(self, kinds: Sequence[str]) -> None:
        """Have the layers of these kinds (heatmap kinds or label stages) made empty at the next flushes."""
        for kind in kinds:
            self._ensure(kind)
            if kind not in self._layers and kind not in self._dirty:
                self._dirty.append(kind)

    def show_cams(self, cams: CamMaps, index: int) -> str:
        """Write the CAMs of image ``index`` into one heatmap per foreground class."""
        dense = cams.dense(len(self.class_names) - 1)
        kinds = self.heatmap_kinds()
        for c, kind in enumerate(kinds):
            self._write(kind, index, dense[c])
        return kinds[-1]

    def show_labels(self, stage: str, labels: np.ndarray, index: int) -> str:
        """Write the label map of image ``index`` into the Labels layer of ``stage``."""
        self._write(stage, index, labels)
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

    def _ensure(self, kind: str) -> np.ndarray:
        """The array of a result kind, made on first use (the data of an earlier result layer if there is one)."""
        if kind not in self._arrays:
            if kind.startswith("pcam ") and kind != "pcam labels":
                c = self.class_names.index(kind[len("pcam "):])
                spec, dtype = (False, self._heatmap_kwargs(c)), np.float32
            else:
                spec, dtype = (True, {"colormap": self.label_colormap(), "opacity": 0.6}), np.uint8
            self._specs[kind] = spec
            self._arrays[kind] = self._reuse(kind, dtype, spec[1])
        return self._arrays[kind]

    def _write(self, kind: str, index: int, plane: np.ndarray) -> None:
        array = self._ensure(kind)
        if self.is_stack:
            array[index] = plane
            self._dirty_slices.setdefault(kind, set()).add(index)
        else:
            array[...] = plane  # one image: always on screen (no slices recorded, so it is refreshed)
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

    def flush(self, max_new: int | None = None) -> int:
        """Show what was written since the last flush: refresh existing layers, add missing ones.

        Args:
            max_new: Add at most this many layers now (the rest at the next flush); None adds all.

        Returns:
            The number of layers added.
        """
        dirty, self._dirty = self._dirty, []
        new = 0
        for kind in dirty:
            if self._on_screen(kind):
                if self._shows_any(self._layers[kind], self._dirty_slices.pop(kind, None)):
                    self._layers[kind].refresh()
            elif max_new is not None and new >= max_new:
                self._dirty.append(kind)
            else:
                self._dirty_slices.pop(kind, None)
                self._layers[kind] = self._add_layer(kind)
                new += 1
        return new

    def _shows_any(self, layer: Layer, slices: set[int] | None) -> bool:
        """Whether the viewer shows one of these slices of the layer (None: none recorded, refresh).

        A stack layer is drawn one slice at a time in 2D, and napari reads the data again when the user
        moves to another slice, so results for slices not on screen need no refresh (a refresh re-slices,
        re-uploads and repaints: tens of milliseconds of the GUI thread per layer under llvmpipe).
        """
        if slices is None or not self.is_stack or self.viewer.dims.ndisplay == 3:
            return True
        try:
            shown = int(np.round(layer.world_to_data(self.viewer.dims.point)[0]))
        except Exception:  # noqa: BLE001 - when in doubt, refresh
            return True
        return shown in slices

    def _add_layer(self, kind: str) -> Layer:
        labels_layer, kwargs = self._specs[kind]
        data = self._arrays[kind]
        metadata = {KEY: f"{self.image_name}|{kind}"}
        common = {"name": f"{self.image_name} {kind}", "scale": self.scale, "translate": self.translate,
                  "axis_labels": self.axis_labels, "units": self.units, "metadata": metadata}
        layer = Labels(data, **common, **kwargs) if labels_layer else Image(data, **common, **kwargs)
        if labels_layer and self.deferred:
            self._tools += _hide_tools(layer)
        with _keep_selection(self.viewer):
            self.viewer.add_layer(layer)
        return layer


class TargetGroup:
    """Several :class:`ResultTarget` (one per image layer) shown by one :class:`Redrawer`: still at most one
    new layer per tick over all of them, so applying a model to many layers keeps the viewer responsive.

    Args:
        targets: The targets, in the order their layers are added.
    """

    def __init__(self, targets: Sequence[ResultTarget]):
        self.targets = list(targets)

    @property
    def deferred(self) -> bool:
        return all(t.deferred for t in self.targets)

    @deferred.setter
    def deferred(self, value: bool) -> None:
        for t in self.targets:
            t.deferred = value

    @property
    def pending(self) -> bool:
        return any(t.pending for t in self.targets)

    @property
    def adding(self) -> bool:
        return any(t.adding for t in self.targets)

    @property
    def restoring(self) -> bool:
        return any(t.restoring for t in self.targets)

    def restore_tool(self) -> bool:
        return any(t.restore_tool() for t in self.targets)  # any() stops at the first that restored one

    def flush(self, max_new: int | None = None) -> int:
        added = 0
        for t in self.targets:
            added += t.flush(None if max_new is None else max_new - added)
        return added


class GcPause:
    """Leave the objects that exist now out of the garbage collector's full passes while a run is shown.

    A full collection walks every tracked object (over half a million in a viewer with torch loaded, about
    0.3 s on this project's 2-core test machine) with the GIL held, from whichever thread happens to
    allocate, so the training thread's allocations can stall the event loop. ``gc.freeze()`` is O(1);
    :meth:`resume` (``gc.unfreeze()``) hands the objects back once no run is shown any more, so garbage
    among them (a layer deleted meanwhile) is collected again afterwards.
    """

    active = 0  # pauses in effect, over every instance (nested runs unfreeze at the last resume)

    def __init__(self):
        self.paused = False

    def pause(self) -> None:
        if not self.paused:
            if GcPause.active == 0:
                gc.freeze()
            GcPause.active += 1
            self.paused = True

    def resume(self, *_) -> None:
        if self.paused:
            self.paused = False
            GcPause.active -= 1
            if GcPause.active == 0:
                gc.unfreeze()


class Redrawer:
    """Shows a :class:`ResultTarget`'s previews on a timer while a worker runs, one new layer per tick.

    A tick that adds a layer holds back the painting of the parent's window (``setUpdatesEnabled``); the
    next tick lets it go, so the repaint runs after the event loop has had its turn, not in the same
    stretch as the add (under llvmpipe each takes about 50 ms).

    Args:
        parent: Qt parent of the timer (the widget); its top-level window is the one held back.
        interval_ms: Time between redraws.
    """

    def __init__(self, parent, interval_ms: int = REDRAW_MS):
        self.target: ResultTarget | None = None
        self.running = False
        self.interval_ms = interval_ms
        self._parent = parent
        self._held = None  # the window whose painting is held back, until the next tick
        self._then: Callable[[], None] | None = None
        self.timer = QTimer(parent)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self._gc = GcPause()
        self.timer.destroyed.connect(partial(GcPause.resume, self._gc))  # the widget closed mid-run

    @property
    def busy(self) -> bool:
        """True while the worker runs or some of its results are not on screen yet."""
        return self.running or self._showing

    def start(self, target: ResultTarget, then: Callable[[], None] | None = None) -> None:
        """Defer ``target``'s redraws to the timer; call ``then`` (start the worker) once its pending layers exist."""
        if self.target is not None and self.target is not target:
            self._release()
            self.target.flush()  # what an earlier run left to show
            while self.target.restore_tool():
                pass
        target.deferred = True
        self.target, self.running, self._then = target, True, then
        self._gc.pause()
        self._pace()
        self.timer.start()  # the first layer is added at the first tick, not in the caller's (a click's) turn

    def finish(self) -> None:
        """The worker ended: the timer stops once the last results are shown."""
        self.running = False

    def _tick(self) -> None:
        target = self.target
        if self._held is not None:
            self._release()  # the layer added at the last tick is painted now
            if target is not None:
                target.flush(max_new=0)  # fresh results join that repaint; no new layer in this tick
        elif target is not None and target.restore_tool():  # a new Labels layer's tool: this tick's new visual
            target.flush(max_new=0)
        elif target is not None:
            if target.adding:
                self._hold()
            try:
                target.flush(max_new=1)
            except BaseException:
                self._release()
                raise
        if self._then is not None and not self._showing:
            then, self._then = self._then, None
            then()
        if self.busy:
            self._pace()
        else:
            self.timer.stop()
            self._gc.resume()

    def _pace(self) -> None:
        """Tick every PREPARE_MS while layers are added or shown one by one, else every ``interval_ms``."""
        target = self.target
        quick = self._held is not None or self._then is not None or (
            target is not None and (target.adding or target.restoring))
        interval = PREPARE_MS if quick else self.interval_ms
        if self.timer.interval() != interval:
            self.timer.setInterval(interval)

    @property
    def _showing(self) -> bool:
        """True while written results or the layer added last are not on screen yet."""
        target = self.target
        return self._held is not None or (target is not None and (target.pending or target.restoring))

    def _hold(self) -> None:
        window = self._parent.window()
        if window.updatesEnabled():
            window.setUpdatesEnabled(False)
            self._held = window

    def _release(self) -> None:
        window, self._held = self._held, None
        if window is not None:
            try:
                window.setUpdatesEnabled(True)  # repaints the whole window at the next turn of the event loop
            except RuntimeError:  # the window is gone (viewer closed)
                pass


# napari builds the vispy visuals of a Labels layer's polygon and brush-stroke tools when the layer is added
# (about 35 ms under llvmpipe); it builds an overlay's visual only once the overlay is visible, so they are
# switched off for the add and back on at later ticks.
TOOL_OVERLAYS = ("polygon", "brush_stroke")


def tool_overlays(layer: Labels) -> list:
    """The editing-tool overlays (polygon, brush stroke) of a Labels layer; [] if napari has none of them.

    The only use of private napari API in the plugin: napari (0.9) keeps a layer's overlays in
    ``layer._overlays`` and has no public accessor for these two. Without it nothing is deferred (the
    layers still work); ``tests/gui/test_results.py`` fails when napari renames or drops them.
    """
    overlays = getattr(layer, "_overlays", None)
    if not hasattr(overlays, "get"):
        return []
    return [overlay for key in TOOL_OVERLAYS if (overlay := overlays.get(key)) is not None
            and hasattr(overlay, "visible")]


def _hide_tools(layer: Labels) -> list:
    hidden = []
    for overlay in tool_overlays(layer):
        if overlay.visible:
            overlay.visible = False
            hidden.append(overlay)
    return hidden


@contextmanager
def _keep_selection(viewer):
    """Add layers without making them the active layer (the user keeps clicking points meanwhile).

    napari selects every inserted layer; with the selection's events blocked and the selection put back
    afterwards, no listener sees the change, which also saves switching the layer controls twice.
    """
    selection = viewer.layers.selection
    active, chosen = selection.active, list(selection)
    with selection.events.blocker_all():
        yield
        if active is not None:
            selection.active = active
        else:
            selection.active = None
            selection.update(chosen)
