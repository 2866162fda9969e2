"""Annotation widget: classes (name, colour), a Points layer per image, the current class, counts, CSV.

The classes live on the Points layer (see :mod:`.classes`), so the training widget and saved projects
see exactly what this widget shows. On a pcam Points layer the keys 0-9 choose the current class
(0 = background); in select mode they also move the selected points to that class. napari's own
letter shortcuts (P add, S select, Z pan/zoom) keep working.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import PcamError
from . import classes as C
from .convert import read_points, save_points

CHANNEL_CHOICES = [("none", None), ("axis 0", 0), ("axis 1", 1), ("axis 2", 2), ("axis 3", 3)]


class AnnotationWidget(QWidget):
    """Define classes and click points of each class on an image layer.

    Args:
        napari_viewer: The viewer (injected by napari).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._names, self._colors = [C.BACKGROUND, "class_1"], [C.default_color(0), C.default_color(1)]
        self._layer: Points | None = None
        self.image = ComboBox(label="image", choices=self._images)
        self.points = ComboBox(label="points", choices=self._points_layers, nullable=True)
        self.channel_axis = ComboBox(label="channel axis", choices=CHANNEL_CHOICES, value=None)
        self.form = Container(widgets=[self.image, self.channel_axis, self.points])
        self.points.changed.connect(self._on_points_changed)
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._on_row_changed)
        self.background = QCheckBox("allow background clicks (key 0)")
        self.background.setChecked(True)
        self.background.toggled.connect(lambda _: self._refresh_list())
        buttons = [("New points layer", self.new_points_layer), ("Add class", self._ask_add),
                   ("Rename", self._ask_rename), ("Colour…", self._ask_color), ("Remove", self._remove_current),
                   ("Save CSV…", self._ask_save), ("Load CSV…", self._ask_load)]
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        rows = [QHBoxLayout() for _ in range(3)]
        for i, (text, slot) in enumerate(buttons):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, s=slot: self._guard(s))
            rows[0 if i == 0 else 1 if i < 5 else 2].addWidget(button)
        layout.addLayout(rows[0])
        layout.addWidget(self.list)
        layout.addWidget(self.background)
        layout.addLayout(rows[1])
        layout.addLayout(rows[2])
        self.reset_choices()
        self._refresh_list()

    # -- layer choices ---------------------------------------------------------------------------
    def _images(self, _widget=None) -> list:
        return [lay for lay in self.viewer.layers if isinstance(lay, Image)]

    def _points_layers(self, _widget=None) -> list:
        return [lay for lay in self.viewer.layers if isinstance(lay, Points)]

    def reset_choices(self, *_) -> None:
        """Refresh the layer pickers (napari calls this when layers change)."""
        self.form.reset_choices()
        if self.points.value is None and self._layer is None and len(self.points.choices) > 1:
            self.points.value = self.points.choices[1]  # the first Points layer (choice 0 is 'none')
        if self.points.value is not self._layer:
            self._on_points_changed(self.points.value)

    # -- classes -----------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self._names)

    @property
    def class_colors(self) -> list[str]:
        return list(self._colors)

    @property
    def current_class(self) -> str | None:
        row = self.list.currentRow()
        return self._names[row] if 0 <= row < len(self._names) else None

    def add_class(self, name: str, color: str | None = None) -> None:
        """Declare a new foreground class (colour from the palette unless given)."""
        name = name.strip()
        if not name or name in self._names:
            raise PcamError(f"class name {name!r} is empty or already used.")
        self._set_classes([*self._names, name], [*self._colors, color or C.default_color(len(self._names))])
        self.set_current_class(name)

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class (its points follow)."""
        new = new.strip()
        if old not in self._names or not new or new in self._names:
            raise PcamError(f"cannot rename {old!r} to {new!r}: the new name is empty or already used.")
        names = [new if n == old else n for n in self._names]
        if self._layer is not None:
            C.rename_in_features(self._layer, old, new)
        self._set_classes(names, self._colors)

    def set_class_color(self, name: str, color: str) -> None:
        """Change a class's colour (its points are recoloured)."""
        colors = list(self._colors)
        colors[self._names.index(name)] = QColor(color).name()
        self._set_classes(self._names, colors)

    def remove_class(self, name: str) -> None:
        """Remove a foreground class that has no points (points are never deleted by this widget)."""
        if name == self._names[0]:
            raise PcamError("the background class cannot be removed; untick 'allow background clicks' instead.")
        n = self.counts().get(name, 0)
        if n:
            raise PcamError(
                f"class {name!r} still has {n} point(s); delete them or move them to another class first "
                "(select them and press the number key of that class)."
            )
        i = self._names.index(name)
        self._set_classes(self._names[:i] + self._names[i + 1:], self._colors[:i] + self._colors[i + 1:])

    def set_current_class(self, name: str) -> None:
        """Make ``name`` the class of the next clicked points."""
        if name == self._names[0] and not self.background.isChecked():
            raise PcamError("background clicks are switched off; tick 'allow background clicks'.")
        self.list.setCurrentRow(self._names.index(name))

    def counts(self) -> dict[str, int]:
        """Points per class on the current points layer."""
        if self._layer is None:
            return {n: 0 for n in self._names}
        return C.counts(self._layer)

    def _set_classes(self, names, colors) -> None:
        current = self.current_class
        self._names, self._colors = list(names), list(colors)
        if self._layer is not None:
            C.set_classes(self._layer, self._names, self._colors)
        self._refresh_list(current)

    def _refresh_list(self, current: str | None = None) -> None:
        current = current or self.current_class
        counts = self.counts()
        self.list.blockSignals(True)
        self.list.clear()
        for i, (name, color) in enumerate(zip(self._names, self._colors)):
            pix = QPixmap(14, 14)
            pix.fill(QColor(color))
            key = f"{i}: " if i < 10 else ""
            off = " (off)" if i == 0 and not self.background.isChecked() else ""
            self.list.addItem(f"{key}{name}{off} — {counts.get(name, 0)} points")
            self.list.item(i).setIcon(QIcon(pix))
            if i == 0 and not self.background.isChecked():
                self.list.item(i).setFlags(Qt.NoItemFlags)
        row = self._names.index(current) if current in self._names else 1
        row = 1 if row == 0 and not self.background.isChecked() else min(row, len(self._names) - 1)
        self.list.setCurrentRow(row)
        self.list.blockSignals(False)
        self._on_row_changed(row)

    def _on_row_changed(self, row: int) -> None:
        if self._layer is not None and 0 <= row < len(self._names):
            C.set_current_class(self._layer, self._names[row])

    # -- points layer --------------------------------------------------------------------------------
    def new_points_layer(self) -> Points:
        """Add an empty pcam Points layer aligned with the chosen image and make it current."""
        image = self.image.value
        if image is None:
            raise PcamError("open an image first: the points layer is created for the chosen image layer.")
        layer = self.viewer.add_points(
            ndim=image.ndim, name=f"{image.name} points", scale=image.scale, translate=image.translate,
            axis_labels=image.axis_labels, units=image.units,
            size=_point_size(image),
            features={C.FEATURE: np.array([], dtype=object)}, feature_defaults={C.FEATURE: self._names[1]},
            metadata={"class_names": list(self._names), "class_colors": list(self._colors)},
            border_color="white", border_width=0.1,
        )
        layer.mode = "add"
        self.reset_choices()
        self.points.value = layer
        return layer

    def _on_points_changed(self, layer) -> None:
        if self._layer is not None:
            self._layer.events.data.disconnect(self._on_data)
            self._layer.events.features.disconnect(self._on_data)
        self._layer = layer
        if layer is None:
            self._refresh_list()
            return
        self._names, self._colors = C.get_classes(layer)
        C.set_classes(layer, self._names, self._colors)
        layer.events.data.connect(self._on_data)
        layer.events.features.connect(self._on_data)
        for key in range(10):
            layer.bind_key(str(key), self._key_handler(key), overwrite=True)
        self._refresh_list()

    def _on_data(self, event=None) -> None:
        if self._layer is not None and getattr(event, "action", "added") in ("added", "removed", "changed"):
            C.recolor(self._layer)
        self._refresh_list()

    def _key_handler(self, key: int):
        def choose_class(layer: Points) -> None:
            self._on_key(key, layer)

        choose_class.__name__ = f"pcam_choose_class_{key}"
        choose_class.__doc__ = f"Choose class {key} (0 = background); in select mode move the selected points to it."
        return choose_class

    def _on_key(self, key: int, layer: Points) -> None:
        if key >= len(self._names):
            return
        name = self._names[key]
        selected = sorted(layer.selected_data) if layer.mode == "select" else []
        self._guard(lambda: self.set_current_class(name))
        if selected and self.current_class == name:
            C.assign_class(layer, selected, name)

    # -- CSV -------------------------------------------------------------------------------------------
    def save_csv(self, path) -> None:
        """Write the points as ``image,y,x,class`` CSV (slice names for stacks)."""
        if self._layer is None or self.image.value is None:
            raise PcamError("choose an image and its points layer first.")
        n = save_points(path, self._layer, self.image.value, self.channel_axis.value)
        show_info(f"saved {n} points to {path}")

    def load_csv(self, path) -> Points:
        """Read ``image,y,x,class`` or napari Points CSV into a new pcam Points layer for the chosen image."""
        image = self.image.value
        if image is None:
            raise PcamError("choose the image the points belong to first.")
        declared = self._names if self._layer is not None else None
        coords, labels, names = read_points(path, image, declared, self.channel_axis.value)
        colors = [self._colors[self._names.index(n)] if n in self._names else C.default_color(i)
                  for i, n in enumerate(names)]
        layer = self.viewer.add_points(
            coords, ndim=image.ndim, name=f"{image.name} points", scale=image.scale, translate=image.translate,
            axis_labels=image.axis_labels, units=image.units,
            features={C.FEATURE: labels}, metadata={"class_names": names, "class_colors": colors},
            size=_point_size(image), border_color="white",
        )
        self.reset_choices()
        self.points.value = layer
        return layer

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save points", "points.csv", "CSV (*.csv)")
        if path:
            self.save_csv(path)

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load points", "", "CSV (*.csv)")
        if path:
            self.load_csv(path)

    def _ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Class name:")
        if ok:
            self.add_class(name)

    def _ask_rename(self) -> None:
        old = self.current_class
        name, ok = QInputDialog.getText(self, "Rename class", "New name:", text=old or "")
        if ok and old is not None:
            self.rename_class(old, name)

    def _ask_color(self) -> None:
        name = self.current_class
        color = QColorDialog.getColor(QColor(self._colors[self._names.index(name)]), self)
        if color.isValid():
            self.set_class_color(name, color.name())

    def _remove_current(self) -> None:
        if self.current_class is not None:
            self.remove_class(self.current_class)

    @staticmethod
    def _guard(action) -> None:
        """Run a UI action; show a PcamError as a notification instead of raising it into Qt."""
        try:
            action()
        except PcamError as exc:
            show_error(str(exc))


def _point_size(image: Image) -> float:
    """A point size that is visible but small on the image: 1/40 of its smaller side, at least 2 pixels."""
    shape = np.shape(image.data[0] if image.multiscale else image.data)
    h, w = shape[-3:-1] if image.rgb else shape[-2:]
    return max(2.0, min(h, w) / 40)
