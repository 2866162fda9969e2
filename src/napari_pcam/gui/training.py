"""Training widget: layers + settings -> a thread worker over core's pipeline generator -> result layers.

Train converts the chosen layers with :mod:`.convert` (core validates), builds a :class:`PipelineConfig`
from the form, and runs :func:`.jobs.training_job` in a napari generator worker. Every yielded
:class:`Progress` moves the progress bar; previews become layers as they arrive (see :mod:`.results`).
The same progress shows in napari's activity dock (:mod:`.activity`), whose Cancel button does what the
widget's does. Cancel calls ``worker.quit()``: the job stops at its next yield and finished stages stay on
disk and on screen; a finished PCAM stage becomes the current model for the apply widget and for
fine-tuning, and a finished chain (until 'final') makes its model bundle the current model.

Fine-tuning passes the current PCAM to the same pipeline (``init``); its results go to ``<run>/finetuned``
(replaced by every fine-tune), so that the run folder's cache of from-scratch results stays truthful.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.choices import apply_choices
from ..core.config import PipelineConfig
from ..core.errors import ConfigError, DataError, PcamError
from ..core.pipeline import STAGES, RunData
from ..core.presets import get_preset
from .activity import ActivityBar
from .annotation import CHANNEL_CHOICES
from .classes import get_classes
from .config_form import ADVANCED_FIELDS, MAIN_FIELDS, ConfigForm
from .convert import layers_to_data
from .jobs import FINETUNE_DIR, VIEWER_CRF_WORKERS, training_job
from .models import BundlePredictor, PcamPredictor, session_for
from .results import Redrawer, ResultTarget


class TrainingWidget(QWidget):
    """Train PCAM (and the later stages) on an image layer and its points layer.

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
        self._run_dir: Path | None = None
        self._auto_dir = Path(tempfile.mkdtemp(prefix="napari-pcam-"))
        self._model_path: Path | None = None
        self._pcam_done = False
        self._shown: set[tuple[str, int]] = set()
        config = get_preset("paper")
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.points = ComboBox(label="points", choices=self._points_choices, nullable=True)
        self.preset = ComboBox(label="defaults", choices=["paper", "sample", "cpu"], value="paper")
        self.until = ComboBox(label="run until", choices=STAGES, value=STAGES[-1])
        self.weights = ComboBox(label="weights", choices=["imagenet", "none", "file"], value="imagenet")
        self.weights_file = FileEdit(label="weights file", mode="r", filter="*.pth *.pt", visible=False)
        self.finetune = CheckBox(label="fine-tune the previous PCAM", value=False)
        self.main = ConfigForm(MAIN_FIELDS, config)
        self.advanced = ConfigForm(ADVANCED_FIELDS, config)
        self.advanced["runtime.crf_workers"].value = VIEWER_CRF_WORKERS
        self.channel_axis = ComboBox(label="channel axis", choices=CHANNEL_CHOICES, value=None)
        self.run_folder = FileEdit(label="run folder", mode="d", value="")
        self.recompute = CheckBox(label="recompute stale results", value=True)
        self.show_advanced = CheckBox(label="advanced settings", value=False)
        self.advanced_box = Container(
            widgets=[*self.advanced.container, self.channel_axis, self.run_folder, self.recompute], visible=False
        )
        self.form = Container(widgets=[
            self.image, self.points, self.preset, self.until, self.weights, self.weights_file, *self.main.container,
            self.finetune, self.show_advanced, self.advanced_box,
        ])
        self.weights.changed.connect(lambda v: setattr(self.weights_file, "visible", v == "file"))
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced_box, "visible", v))
        self.preset.changed.connect(self._load_preset)
        self.train_button, self.cancel_button = QPushButton("Train"), QPushButton("Cancel")
        self.train_button.clicked.connect(self.train)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self._redraw = Redrawer(self)
        self.progress, self.status = QProgressBar(), QLabel("idle")
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p%")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.reset_choices()

    # -- choices and settings ------------------------------------------------------------------------
    def _image_choices(self, _widget=None) -> list:
        # Labels layers are listed too so that choosing one explains itself instead of being invisible.
        return [lay for lay in self.viewer.layers if isinstance(lay, (Image, Labels)) and not _is_result(lay)]

    def _points_choices(self, _widget=None) -> list:
        return [lay for lay in self.viewer.layers if isinstance(lay, Points)]

    def reset_choices(self, *_) -> None:
        """Refresh the layer pickers (napari calls this when layers change)."""
        self.form.reset_choices()

    def _load_preset(self, name: str) -> None:
        config = get_preset(name)
        self.main.load(config)
        self.advanced.load(config)
        self.advanced["runtime.crf_workers"].value = VIEWER_CRF_WORKERS
        self.weights.value = config.cam.weights if config.cam.weights in ("imagenet", "none") else "file"

    def config(self) -> PipelineConfig:
        """The pipeline settings shown in the widget (checked by core)."""
        config = self.main.apply(self.advanced.apply(get_preset(self.preset.value)))
        weights = self.weights.value
        if weights == "file":
            path = str(self.weights_file.value or "")
            if path in ("", ".") or not Path(path).is_file():
                raise ConfigError("weights = file: choose an existing .pth file of the encoder's weights.")
            weights = path
        return apply_choices(config, weights=weights)

    # -- training ----------------------------------------------------------------------------------------
    def train(self) -> None:
        """Start training on the chosen layers (a notification explains any problem with them)."""
        if self.worker is not None:
            show_info("training is already running; cancel it first.")
            return
        try:
            image, points, axis = self.image.value, self.points.value, self.channel_axis.value
            if image is None:
                raise DataError("choose an image layer to train on.")
            stack, annotations = layers_to_data(image, points, axis)
            data = RunData(stack, annotations)
            config = self.config()
            init = self._init_model() if self.finetune.value else None
            out, force = self._out_folder(image.name, finetune=init is not None)
            names, colors = get_classes(points)
            target = ResultTarget(self.viewer, image, names, colors, axis)
        except PcamError as exc:
            show_error(str(exc))
            return
        self.target, self._run_dir, self._pcam_done, self._shown = target, out, False, set()
        self._config = config
        self._model_path = out / "models" / "pcam.pt"
        threads = max(1, (os.cpu_count() or 2) - 1)
        self.worker = create_worker(
            training_job, data, config, out, until=self.until.value, force=force, init=init, threads=threads,
            _start_thread=False, _connect={"errored": self._on_error},
        )
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_returned)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_finished)
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("starting…")
        self.activity = ActivityBar(f"train {image.name}", on_cancel=self.cancel)
        self.started_at = time.perf_counter()
        # The empty result layers are made first (each added in a timer tick and painted, shaders compiled,
        # in the next), while no training thread competes with the viewer; then the worker starts and
        # result layers are only refreshed, on the timer.
        target.prepare(_result_kinds(target, self.until.value))
        self._redraw.start(target, then=self.worker.start)

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        if self.worker is not None:
            self.status.setText("cancelling…")
            self.worker.quit()

    def _init_model(self):
        """A copy of the current PCAM (fine-tuning trains in place; the session's model stays as it is)."""
        model = self.session.model
        trained = model.trained if isinstance(model, PcamPredictor) else getattr(model, "pcam", None)
        if trained is None:
            raise DataError("there is no previous PCAM model to fine-tune: train once (or load a PCAM or a model "
                            "bundle with a PCAM) first.")
        return copy.deepcopy(trained)

    def _out_folder(self, image_name: str, finetune: bool = False) -> tuple[Path, bool]:
        chosen = str(self.run_folder.value or "")
        if chosen not in ("", "."):
            out, force = Path(chosen), bool(self.recompute.value)
        else:
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in image_name) or "image"
            out, force = self._auto_dir / safe, True
        return (out / FINETUNE_DIR, True) if finetune else (out, force)

    # -- worker callbacks (GUI thread) ---------------------------------------------------------------------
    def _on_progress(self, progress) -> None:
        if progress.stage == "check":  # the pipeline's click check of a stage's labels
            if progress.message:
                show_warning(progress.message)
            return
        if progress.stage != "pcam":
            self._mark_pcam_done()
        loss = f", loss {progress.loss:.4f}" if progress.loss is not None else ""
        total = f"/{progress.total}" if progress.total else ""
        self.status.setText(f"{progress.stage}: step {progress.step}{total}{loss}")
        self.progress.setFormat(f"{progress.stage} %p%")
        self.progress.setValue(int(1000 * progress.fraction))
        if self.target is not None and self.target.show(progress) is not None:
            self._shown.add((progress.stage, progress.step - 1))
        if self.activity is not None:
            self.activity.show(progress)

    def _mark_pcam_done(self) -> None:
        if not self._pcam_done and self._model_path is not None and self._model_path.is_file():
            self._pcam_done = True

    def _on_returned(self, result) -> None:
        target = self.target
        for i, cams in enumerate(result.cams or []):  # cached stages yield no previews
            if ("cams", i) not in self._shown:
                target.show_cams(cams, i)
        for stage in ("refined", "final"):
            for i, labels in enumerate(getattr(result, stage, None) or []):
                if (stage, i) not in self._shown:
                    target.show_labels(stage, labels, i)
        if result.segmenter is not None and (result.bundle_path / "bundle.json").is_file():
            self.session.set_model(BundlePredictor.from_result(result, self._config))
        elif result.pcam is not None:
            self.session.set_model(PcamPredictor(result.pcam, self._config.cam_inference, source=self._model_path))
        self.status.setText(f"done in {time.perf_counter() - self.started_at:.1f} s; results in {result.folder}")
        self.progress.setValue(1000)

    def _on_aborted(self) -> None:
        kept = ""
        if self._pcam_done:
            try:
                self.session.set_model(PcamPredictor.load(self._model_path, device="cpu"))
                kept = " The trained PCAM is kept as the current model."
            except PcamError as exc:
                show_error(str(exc))
        self.status.setText(f"cancelled; finished stages are kept in {self._run_dir}.{kept}")

    def _on_error(self, exc: Exception) -> None:
        # napari's worker relays the exception itself as an error notification (its message is core's).
        self.status.setText(f"failed: {exc}")

    @property
    def busy(self) -> bool:
        """True while training runs or its last results are not on screen yet."""
        return self.worker is not None or self._redraw.busy

    def _on_finished(self) -> None:
        self._redraw.finish()  # its timer adds the last result layers
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        self.worker = None
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


def _result_kinds(target: ResultTarget, until: str) -> list[str]:
    """Result layers that a run until ``until`` fills: heatmaps from 'cams', then 'refined', 'final'."""
    last = STAGES.index(until)
    kinds = target.heatmap_kinds() if last >= STAGES.index("cams") else []
    return kinds + [stage for stage in ("refined", "final") if last >= STAGES.index(stage)]


def _is_result(layer) -> bool:
    return "pcam_result" in layer.metadata
