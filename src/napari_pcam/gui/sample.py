"""File > Open Sample: the built-in synthetic sample as napari layers."""

from __future__ import annotations

import numpy as np

from ..core.data.synthetic import load_sample
from .classes import CLASS_COLORS

AXIS_LABELS = ("slice", "y", "x")  # the viewer's dims slider is named after them


def sample_layers() -> list[tuple]:
    """The training sample as an RGB image stack, a Points layer with a 'class' feature, and masks."""
    data = load_sample("train")
    stack = np.stack(data.images.images)
    pts = np.column_stack([data.points.image, data.points.yx]).astype(float)
    classes = np.array([data.class_names[c] for c in data.points.cls])
    colors = [CLASS_COLORS[c % len(CLASS_COLORS)] for c in data.points.cls]
    axes = {"axis_labels": AXIS_LABELS}
    return [
        (stack, {"name": "pcam sample", "rgb": True, **axes}, "image"),
        (
            pts,
            {
                "name": "pcam points",
                **axes,
                "features": {"class": classes},
                "face_color": colors,
                "size": 5,
                "metadata": {
                    "class_names": list(data.class_names),
                    "class_colors": [CLASS_COLORS[i % len(CLASS_COLORS)] for i in range(len(data.class_names))],
                },
            },
            "points",
        ),
        (np.stack(data.masks), {"name": "pcam ground truth", "opacity": 0.4, "visible": False, **axes}, "labels"),
    ]
