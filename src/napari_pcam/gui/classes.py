"""Class definitions stored on a Points layer: names, colours, the ``class`` feature and point colours.

A pcam Points layer keeps its classes in ``layer.metadata`` (``class_names`` with background first,
``class_colors`` as hex strings) and each point's class name in the ``class`` feature. Everything else
(face colours, per-class counts, integer ids for core) is derived from these two.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from napari.layers import Points
from napari.utils.colormaps.standardize_color import transform_color

from ..core.errors import DataError

CLASS_COLORS = ("#808080", "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                "#bcbd22", "#17becf")
FEATURE = "class"
BACKGROUND = "background"


def default_color(index: int) -> str:
    """Colour of the class with id ``index`` in the default palette."""
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def rgba(color: str | Sequence[float]) -> np.ndarray:
    """float32 (4,) RGBA in [0, 1] of a colour name, hex string or RGB(A) sequence."""
    return transform_color(color)[0].astype(np.float32)


def get_classes(layer: Points) -> tuple[list[str], list[str]]:
    """(names, hex colours) of a points layer, background first.

    Taken from the layer's metadata when present; otherwise derived from its ``class`` feature
    (sorted names after ``background``) and the default palette.
    """
    names = list(layer.metadata.get("class_names", []))
    if not names:
        present = sorted({str(v) for v in point_classes(layer)} - {BACKGROUND})
        names = [BACKGROUND, *present] if present else [BACKGROUND, "class_1"]
    colors = list(layer.metadata.get("class_colors", []))
    colors = colors[: len(names)] + [default_color(i) for i in range(len(colors), len(names))]
    return names, colors


def set_classes(layer: Points, names: Sequence[str], colors: Sequence[str]) -> None:
    """Store class names and colours on the layer and recolour its points."""
    if len(names) != len(colors):
        raise DataError(f"{len(names)} class names but {len(colors)} colours.")
    if len(set(names)) != len(names):
        raise DataError("class names must be unique.")
    layer.metadata["class_names"] = list(names)
    layer.metadata["class_colors"] = list(colors)
    recolor(layer)


def point_classes(layer: Points) -> np.ndarray:
    """The ``class`` feature of every point as strings (empty when the layer has no such feature)."""
    if FEATURE not in layer.features.columns:
        if "label" in layer.features.columns:
            return layer.features["label"].astype(str).to_numpy()
        return np.full(len(layer.data), BACKGROUND if len(layer.data) == 0 else "", dtype=object)
    return layer.features[FEATURE].astype(str).to_numpy()


def class_ids(layer: Points, names: Sequence[str]) -> np.ndarray:
    """int64 (N,) class id of every point of the layer.

    Raises:
        DataError: a point whose class is not one of ``names``.
    """
    index = {n: i for i, n in enumerate(names)}
    raw = point_classes(layer)
    unknown = sorted({v for v in raw if v not in index})
    if unknown:
        raise DataError(
            f"points layer {layer.name!r} has points of class(es) {', '.join(map(repr, unknown))} that are not "
            f"declared (classes: {', '.join(names)}); add the class or change those points."
        )
    return np.array([index[v] for v in raw], dtype=np.int64)


def counts(layer: Points) -> dict[str, int]:
    """Number of points per declared class name."""
    names, _ = get_classes(layer)
    raw = point_classes(layer)
    return {n: int(np.sum(raw == n)) for n in names}


def recolor(layer: Points) -> None:
    """Set every point's face colour from its class (unknown classes are white)."""
    names, colors = get_classes(layer)
    lut = {n: rgba(c) for n, c in zip(names, colors)}
    white = np.ones(4, np.float32)
    face = np.array([lut.get(v, white) for v in point_classes(layer)], np.float32).reshape(-1, 4)
    if len(face):
        layer.face_color = face
    layer.refresh()


def set_current_class(layer: Points, name: str) -> None:
    """Make ``name`` the class (feature default and colour) of the next points added to the layer."""
    names, colors = get_classes(layer)
    if name not in names:
        raise DataError(f"class {name!r} is not declared (classes: {', '.join(names)}).")
    # napari copies the features of selected points into the defaults (and vice versa): deselect first
    layer.selected_data = set()
    layer.feature_defaults = {FEATURE: name}
    layer.current_face_color = colors[names.index(name)]


def assign_class(layer: Points, indices: Sequence[int], name: str) -> None:
    """Give the points at ``indices`` the class ``name`` and recolour them."""
    if not len(indices):
        return
    features = layer.features.copy()
    if FEATURE not in features.columns:
        features[FEATURE] = point_classes(layer)
    features[FEATURE] = features[FEATURE].astype(object)
    features.loc[features.index[list(indices)], FEATURE] = name
    layer.features = features
    recolor(layer)


def rename_in_features(layer: Points, old: str, new: str) -> None:
    """Rename the class ``old`` to ``new`` in the layer's ``class`` feature and defaults."""
    features = layer.features.copy()
    if FEATURE in features.columns:
        col = features[FEATURE].astype(object)
        col[col == old] = new
        features[FEATURE] = col
        layer.features = features
    if FEATURE in layer.feature_defaults.columns and layer.feature_defaults[FEATURE].iloc[0] == old:
        layer.feature_defaults = {FEATURE: new}
