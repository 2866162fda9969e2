"""``napari-pcam gui``: open napari with the plugin's widgets docked (and the built-in sample).

napari is imported inside the command only, so that ``import napari_pcam.cli`` stays headless.
"""

from __future__ import annotations

import argparse

WIDGETS = ("Annotate points", "Train", "Apply model")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``gui``."""
    p = sub.add_parser(
        "gui",
        help="open napari with the napari-pcam widgets (and the sample)",
        description="Open the napari viewer with the annotation, training and apply widgets docked and, unless "
        "--no-sample, the built-in sample (images, points, masks) with the light 'sample' training preset.",
    )
    p.add_argument("--no-sample", action="store_true", help="start with an empty viewer")
    p.set_defaults(func=main)


def open_viewer(sample: bool = True, show: bool = True):
    """A napari viewer with the widgets docked (and the sample, with the training widget set up for it)."""
    # torch before napari's OpenGL context: with Mesa's llvmpipe, loading triton afterwards can crash.
    import napari_pcam.core.pipeline  # noqa: F401

    # isort: split
    import napari

    viewer = napari.Viewer(show=show)
    if sample:
        viewer.open_sample("napari-pcam", "sample")
    docked = {name: viewer.window.add_plugin_dock_widget("napari-pcam", name)[1] for name in WIDGETS}
    if sample:
        train = docked["Train"]
        train.preset.value = "sample"
        train.image.value = viewer.layers["pcam sample"]
        train.points.value = viewer.layers["pcam points"]
        viewer.layers.selection.active = viewer.layers["pcam points"]
    return viewer


def main(args: argparse.Namespace) -> int:
    """Open the viewer and run napari's event loop until it is closed."""
    import napari

    open_viewer(sample=not args.no_sample)
    napari.run()
    return 0
