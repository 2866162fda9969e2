"""Shared by the scripts: a viewer with the sample, the widgets docked, light training settings."""

from __future__ import annotations

# torch (and torchvision, which imports triton) must be loaded before napari creates its OpenGL context:
# with Mesa's llvmpipe (Xvfb, VMs) importing triton afterwards crashes on clashing LLVM symbols.
import napari_pcam.core.pipeline  # noqa: F401  (imports torch and torchvision)

# isort: split
import napari
from qtpy.QtCore import QEventLoop, QTimer


def open_sample_session(epochs: int, show: bool = True, until: str = "final", irn_epochs: int | None = None,
                        deeplab_epochs: int | None = None):
    """(viewer, training widget) with the sample open and CPU settings of the ``sample`` preset.

    Args:
        epochs: PCAM epochs.
        show: Show the viewer window.
        until: Last stage to train.
        irn_epochs: IRNet epochs (None keeps the preset's).
        deeplab_epochs: DeepLabv3+ epochs (None keeps the preset's).
    """
    viewer = napari.Viewer(show=show)
    viewer.open_sample("napari-pcam", "sample")
    viewer.window.add_plugin_dock_widget("napari-pcam", "Annotate points")
    _, train = viewer.window.add_plugin_dock_widget("napari-pcam", "Train")
    train.preset.value = "sample"
    train.main["runtime.device"].value = "cpu"
    train.main["cam.epochs"].value = epochs
    if irn_epochs is not None:
        train.main["irn.epochs"].value = irn_epochs
    if deeplab_epochs is not None:
        train.main["deeplab.epochs"].value = deeplab_epochs
    train.until.value = until
    train.image.value = viewer.layers["pcam sample"]
    train.points.value = viewer.layers["pcam points"]
    return viewer, train


def wait_for(widget) -> None:
    """Run the Qt event loop until the widget's worker has finished and its result layers are shown."""
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: None if widget.busy else loop.quit())
    timer.start()
    if widget.busy:
        loop.exec_()
    timer.stop()
