"""Shared by the scripts: a viewer with the sample, the widgets docked, light training settings."""

from __future__ import annotations

# torch (and torchvision, which imports triton) must be loaded before napari creates its OpenGL context:
# with Mesa's llvmpipe (Xvfb, VMs) importing triton afterwards crashes on clashing LLVM symbols.
import napari_pcam.core.pipeline  # noqa: F401  (imports torch and torchvision)
import napari
from qtpy.QtCore import QEventLoop


def open_sample_session(epochs: int, show: bool = True):
    """(viewer, training widget) with the sample open and CPU settings of the ``sample`` preset."""
    viewer = napari.Viewer(show=show)
    viewer.open_sample("napari-pcam", "sample")
    viewer.window.add_plugin_dock_widget("napari-pcam", "Annotate points")
    _, train = viewer.window.add_plugin_dock_widget("napari-pcam", "Train")
    train.preset.value = "sample"
    train.main["runtime.device"].value = "cpu"
    train.main["cam.epochs"].value = epochs
    train.image.value = viewer.layers["pcam sample"]
    train.points.value = viewer.layers["pcam points"]
    return viewer, train


def wait_for(widget) -> None:
    """Run the Qt event loop until the widget's worker has finished."""
    if widget.worker is None:
        return
    loop = QEventLoop()
    widget.worker.finished.connect(loop.quit)
    loop.exec_()
