"""Apply / save / load widget: run the current model on any image layer; save it; load a model.

The current model is shared per viewer (see :mod:`.models`): the training widget sets it when a PCAM
stage or a whole chain finishes, Load replaces it. Models are model bundles (the ``model`` folder of a
run: final labels, and heatmaps when it holds a PCAM) or single checkpoints (PCAM: heatmaps and their
labels; DeepLabv3+: final labels). A model whose classes differ from the chosen points layer's classes
is refused with a notification.

The model runs on the chosen image layer (labels and heatmaps as layers), on every image layer (label
files ``<label folder>/<layer>_labels.tif``, and label layers too if asked: napari's cost of adding
a layer grows with the number of layers), or on every image file of a
folder (``<label folder>/<file>_labels.tif``, by default in ``<folder>/pcam_labels``; unreadable files are
skipped and listed). Existing label files are refused before any work unless 'overwrite' is ticked.
Applying shows its progress in the widget's bar and in napari's activity
dock (:mod:`.activity`); Cancel (either) stops it after the current image.
"""

from __future__ import annotations

import os
from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.batch import check_targets, label_path, plan_folder
from ..core.errors import DataError, PcamError
from .activity import ActivityBar
from .annotation import CHANNEL_CHOICES
from .classes import CLASS_COLORS, get_classes
from .convert import image_stack
from .jobs import predict_folder_job, predict_job, predict_layers_job
from .models import check_channels, check_classes, load_model, session_for
from .results import Redrawer, ResultTarget, TargetGroup

MODES = ("the chosen image", "every image layer", "a folder of files")
# Above this many pixels an image gets labels only: its PCAM heatmaps are computed at full resolution and
# several scales (K x H x W floats each), its labels in tiles with bounded memory (core's predict_labels).
LARGE_PIXELS = 4096 * 4096


class ApplyWidget(QWidget):
    """Apply the current model to an image layer; save or load models.

    Args:
        napari_viewer: The viewer (injected by napari).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.worker = None
        self.activity: ActivityBar | None = None
        self.target: ResultTarget | None = None
        self._redraw = Redrawer(self)
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.channel_axis = ComboBox(label="channel axis", choices=CHANNEL_CHOICES, value=None)
        self.channel_axis.tooltip = (  # the stack/channel rule of core.data.stacks, as --channel-axis in the CLI
            "axis of the channels; 'none': RGB layers are colour and a 3D layer's first axis is its slices")
        self.classes_from = ComboBox(label="classes of", choices=self._points_choices, nullable=True, value=None)
        self.mode = ComboBox(label="apply to", choices=MODES, value=MODES[0])
        self.folder = FileEdit(label="image folder", mode="d", value="", visible=False)
        self.out = FileEdit(label="label folder", mode="d", value="")
        self.out.tooltip = ("where label TIFFs go: for a folder of files, default <image folder>/pcam_labels; "
                            "for image layers, none unless chosen")
        self.overwrite = CheckBox(label="overwrite existing label files", value=False)
        self.add_layers = CheckBox(label="also add a label layer per image layer", value=False, visible=False)
        self.add_layers.tooltip = ("napari spends 0.1-0.3 s of the viewer's time on every new layer under software "
                                   "OpenGL, more with many layers: off, the label files are written and the viewer "
                                   "stays responsive")
        self.mode.changed.connect(self._on_mode)
        self.form = Container(widgets=[self.mode, self.image, self.folder, self.channel_axis, self.classes_from,
                                       self.out, self.overwrite, self.add_layers])
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.apply_button = QPushButton("Apply model")
        self.apply_button.clicked.connect(self.apply)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress, self.status = QProgressBar(), QLabel("idle")
        self.progress.setRange(0, 1000)
        self.status.setWordWrap(True)
        load, load_file = QPushButton("Load bundle…"), QPushButton("Load checkpoint…")
        save = QPushButton("Save model…")
        load.setToolTip("a model bundle: the 'model' folder of a training run")
        load_file.setToolTip("a single PCAM or DeepLabv3+ checkpoint (.pt)")
        load.clicked.connect(self._ask_load_bundle)
        load_file.clicked.connect(self._ask_load)
        save.clicked.connect(self._ask_save)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.model_label)
        rows = QHBoxLayout(), QHBoxLayout()
        for button in (self.apply_button, self.cancel_button):
            rows[0].addWidget(button)
        for button in (load, load_file, save):
            rows[1].addWidget(button)
        layout.addLayout(rows[0])
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(rows[1])
        layout.addStretch(1)
        self.session.model_changed.connect(self._show_model)
        self._show_model(self.session.model)
        self.reset_choices()

    def _on_mode(self, mode: str) -> None:
        self.image.visible = mode == MODES[0]
        self.folder.visible = mode == MODES[2]
        self.add_layers.visible = mode == MODES[1]

    def _image_choices(self, _widget=None) -> list:
        return [lay for lay in self.viewer.layers
                if isinstance(lay, (Image, Labels)) and "pcam_result" not in lay.metadata]

    def _points_choices(self, _widget=None) -> list:
        return [lay for lay in self.viewer.layers if isinstance(lay, Points)]

    def reset_choices(self, *_) -> None:
        """Refresh the layer pickers (napari calls this when layers change)."""
        self.form.reset_choices()

    def _show_model(self, model) -> None:
        if model is None:
            self.model_label.setText("model: none (train one, or load a model file)")
        else:
            source = f" from {model.source}" if getattr(model, "source", None) else ""
            self.model_label.setText(f"model: {model.kind}{source}; classes {', '.join(model.class_names)}")

    def _colors(self, names) -> list[str]:
        points = self.classes_from.value
        if points is not None:
            layer_names, layer_colors = get_classes(points)
            if list(layer_names) == list(names):
                return layer_colors
        return [CLASS_COLORS[i % len(CLASS_COLORS)] for i in range(len(names))]

    def apply(self) -> None:
        """Run the current model as the 'apply to' choice says; results appear as layers or label files."""
        if self.worker is not None:
            show_info("the model is already being applied.")
            return
        model = self.session.model
        try:
            if model is None:
                raise DataError("there is no model yet: train one or load a model file first.")
            if self.classes_from.value is not None:
                check_classes(model, get_classes(self.classes_from.value)[0])
            start = {MODES[0]: self._apply_to_layer, MODES[1]: self._apply_to_layers,
                     MODES[2]: self._apply_to_folder}[self.mode.value]
            worker, target, what = start(model)
        except PcamError as exc:
            show_error(str(exc))
            return
        self._start(worker, target, what)

    def _threads(self) -> int:
        return max(1, (os.cpu_count() or 2) - 1)

    def _out_folder(self) -> Path | None:
        chosen = str(self.out.value or "")
        return None if chosen in ("", ".") else Path(chosen)

    def _apply_to_layer(self, model):
        image = self.image.value
        if image is None:
            raise DataError("choose an image layer to apply the model to.")
        stack = image_stack(image, self.channel_axis.value, lazy=True)  # a dask / zarr layer stays unread
        names = list(model.class_names)
        target = ResultTarget(self.viewer, image, names, self._colors(names), self.channel_axis.value)
        large = max(h * w for h, w in stack.shapes) > LARGE_PIXELS
        if large:
            show_info(f"{image.name!r} is large: it gets labels only (segmented in tiles), no heatmaps.")
        elif stack.lazy:
            stack = image_stack(image, self.channel_axis.value)  # small: read once, for labels and heatmaps
        worker = create_worker(predict_job, model, stack, threads=self._threads(), heatmaps=not large,
                               _start_thread=False, _connect={"errored": self._on_error})
        return worker, target, image.name

    def _apply_to_layers(self, model):
        layers = [lay for lay in self._image_choices() if isinstance(lay, Image)]
        if not layers:
            raise DataError("there is no image layer to apply the model to; open images first.")
        axis = self.channel_axis.value
        stacks = [image_stack(layer, axis, lazy=True) for layer in layers]  # labels only: read tile by tile
        for layer, stack in zip(layers, stacks):
            check_channels(model, stack, f"image layer {layer.name!r}")
        out = self._out_folder()
        if out is None and not self.add_layers.value:
            raise DataError("choose a label folder for the label files of the image layers (or tick 'also add a "
                            "label layer per image layer').")
        targets = [label_path(out, layer.name) for layer in layers] if out is not None else None
        if targets:
            check_targets(targets, overwrite=bool(self.overwrite.value))
        names = list(model.class_names)
        group = None
        if self.add_layers.value:
            group = TargetGroup([ResultTarget(self.viewer, layer, names, self._colors(names), axis)
                                 for layer in layers])
        worker = create_worker(predict_layers_job, model, stacks, [lay.name for lay in layers], targets,
                               threads=self._threads(), _start_thread=False, _connect={"errored": self._on_error})
        return worker, group, f"{len(layers)} image layers"

    def _apply_to_folder(self, model):
        folder = str(self.folder.value or "")
        if folder in ("", "."):
            raise DataError("choose the folder of images to apply the model to.")
        out, overwrite = self._out_folder(), bool(self.overwrite.value)
        files, targets = plan_folder(folder, out, overwrite=overwrite)  # refuses before any work
        worker = create_worker(predict_folder_job, model, Path(folder), out, overwrite, threads=self._threads(),
                               _start_thread=False, _connect={"errored": self._on_error})
        return worker, None, f"{len(files)} files of {folder} (labels into {targets[0].parent})"

    def _start(self, worker, target, what: str) -> None:
        self.worker, self.target = worker, target
        if target is not None:
            self._redraw.start(target)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_returned)
        self.worker.aborted.connect(lambda: self.status.setText("cancelled; the images done so far are kept."))
        self.worker.finished.connect(self._on_finished)
        self.apply_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"applying the model to {what}…")
        self.activity = ActivityBar(f"apply to {what}", on_cancel=self.cancel)
        self.worker.start()

    def cancel(self) -> None:
        """Stop applying after the current image (the results so far stay)."""
        if self.worker is not None:
            self.status.setText("cancelling…")
            self.worker.quit()

    @property
    def busy(self) -> bool:
        """True while the model runs or its last results are not on screen yet."""
        return self.worker is not None or self._redraw.busy

    def _on_progress(self, progress) -> None:
        if isinstance(self.target, TargetGroup) and progress.preview is not None:
            index, record = progress.preview
            self.target.targets[index].show(record)
        elif isinstance(self.target, ResultTarget):
            self.target.show(progress)
        self.progress.setFormat(f"{progress.stage} %p%")
        self.progress.setValue(int(1000 * progress.fraction))
        self.status.setText(f"{progress.stage}: image {progress.step}/{progress.total} {progress.message}".strip())
        if self.activity is not None:
            self.activity.show(progress)

    def _on_error(self, exc: Exception) -> None:
        # napari's worker relays the exception itself as an error notification
        self.status.setText(f"failed: {exc}")

    def _on_returned(self, result) -> None:
        summary = result.summary() if getattr(result, "written", None) or getattr(result, "skipped", None) else ""
        self.status.setText(f"done; {summary}" if summary else "done")
        self.progress.setValue(1000)
        if getattr(result, "skipped", None):
            show_warning(f"skipped {len(result.skipped)} file(s): "
                         + "; ".join(f"{name} ({why})" for name, why in result.skipped))

    def _on_finished(self) -> None:
        self._redraw.finish()
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        self.worker = None
        self.apply_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def load(self, path) -> None:
        """Load a model bundle folder or a checkpoint file (PCAM or DeepLab) as the current model."""
        model = load_model(path)
        if self.classes_from.value is not None:
            check_classes(model, get_classes(self.classes_from.value)[0])
        self.session.set_model(model)

    def save(self, path) -> None:
        """Write the current model to ``path``."""
        if self.session.model is None:
            raise DataError("there is no model to save yet.")
        self.session.model.save(path)
        show_info(f"model saved to {path}")

    def _ask_load_bundle(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Load model bundle (the 'model' folder of a run)")
        if path:
            _guard(lambda: self.load(path))

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", "", "napari-pcam models (*.pt *.pth bundle.json)")
        if path:
            _guard(lambda: self.load(path))

    def _ask_save(self) -> None:
        if getattr(self.session.model, "kind", None) == "bundle":
            path, _ = QFileDialog.getSaveFileName(self, "Save model bundle (a new folder)", "model")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", "model.pt", "napari-pcam models (*.pt)")
        if path:
            _guard(lambda: self.save(path))


def _guard(action) -> None:
    try:
        action()
    except PcamError as exc:
        show_error(str(exc))
