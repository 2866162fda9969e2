"""Apply / save / load widget: run the current model on any image layer; save it; load a model.

The current model is shared per viewer (see :mod:`.models`): the training widget sets it when a PCAM
stage or a whole chain finishes, Load replaces it. Models are model bundles (the ``model`` folder of a
run: final labels, and heatmaps when it holds a PCAM) or single checkpoints (PCAM: heatmaps and their
labels; DeepLabv3+: final labels). A model whose classes differ from the chosen points layer's classes
is refused with a notification. Applying shows its progress in the widget's bar and in napari's activity
dock (:mod:`.activity`); Cancel (either) stops it after the current image.
"""

from __future__ import annotations

import os

from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.errors import DataError, PcamError
from .activity import ActivityBar
from .annotation import CHANNEL_CHOICES
from .classes import CLASS_COLORS, get_classes
from .convert import image_stack
from .jobs import predict_job
from .models import check_classes, load_model, session_for
from .results import Redrawer, ResultTarget


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
        self.form = Container(widgets=[self.image, self.channel_axis, self.classes_from])
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
        """Run the current model on the chosen image layer; results appear as layers."""
        if self.worker is not None:
            show_info("the model is already being applied.")
            return
        model = self.session.model
        try:
            if model is None:
                raise DataError("there is no model yet: train one or load a model file first.")
            image = self.image.value
            if image is None:
                raise DataError("choose an image layer to apply the model to.")
            stack = image_stack(image, self.channel_axis.value)
            if self.classes_from.value is not None:
                check_classes(model, get_classes(self.classes_from.value)[0])
            names = list(model.class_names)
            target = ResultTarget(self.viewer, image, names, self._colors(names), self.channel_axis.value)
        except PcamError as exc:
            show_error(str(exc))
            return
        self.worker = create_worker(
            predict_job, model, stack, threads=max(1, (os.cpu_count() or 2) - 1),
            _start_thread=False, _connect={"errored": self._on_error},
        )
        self.target = target
        self._redraw.start(target)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_returned)
        self.worker.aborted.connect(lambda: self.status.setText("cancelled; the images done so far are shown."))
        self.worker.finished.connect(self._on_finished)
        self.apply_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"applying the model to {image.name}…")
        self.activity = ActivityBar(f"apply to {image.name}", on_cancel=self.cancel)
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
        self.target.show(progress)
        self.progress.setFormat(f"{progress.stage} %p%")
        self.progress.setValue(int(1000 * progress.fraction))
        self.status.setText(f"{progress.stage}: image {progress.step}/{progress.total} {progress.message}".strip())
        if self.activity is not None:
            self.activity.show(progress)

    def _on_error(self, exc: Exception) -> None:
        # napari's worker relays the exception itself as an error notification
        self.status.setText(f"failed: {exc}")

    def _on_returned(self, _result) -> None:
        self.status.setText("done")
        self.progress.setValue(1000)

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
