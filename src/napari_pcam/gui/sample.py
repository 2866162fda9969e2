"""File > Open Sample: the built-in synthetic sample as napari layers."""

from __future__ import annotations

import numpy as np

from ..core.data.synthetic import load_sample

CLASS_COLORS = ("#808080", "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


def sample_layers() -> list[tuple]:
    """The training sample as an RGB image stack, a Points layer with a 'class' feature, and masks."""
    data = load_sample("train")
    stack = np.stack(data.images.images)
    pts = np.column_stack([data.points.image, data.points.yx]).astype(float)
    classes = np.array([data.class_names[c] for c in data.points.cls])
    colors = [CLASS_COLORS[c % len(CLASS_COLORS)] for c in data.points.cls]
    return [
        (stack, {"name": "pcam sample", "rgb": True}, "image"),
        (
            pts,
            {
                "name": "pcam points",
                "features": {"class": classes},
                "face_color": colors,
                "size": 5,
                "metadata": {"class_names": list(data.class_names)},
            },
            "points",
        ),
        (np.stack(data.masks), {"name": "pcam ground truth", "opacity": 0.4, "visible": False}, "labels"),
    ]
