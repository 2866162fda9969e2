"""Point annotations: image index, (y, x) position and class of every click.

Class 0 is background: it gets no CAM of its own, and background clicks are negatives for every class.
Image-level labels are the foreground classes clicked in each image.

Two CSV layouts are read: ``image,y,x,class`` (image = file name, file stem or 0-based index; class =
integer id or class name) and napari's own Points export (``index,axis-0,axis-1[,axis-2],<features>``,
where a 3D layer's ``axis-0`` is the slice and a ``class`` or ``label`` feature holds the class).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from ..io import atomic_write_text


@dataclass(frozen=True)
class PointAnnotations:
    """Clicked points of several images.

    Attributes:
        image: int64 (N,) index of the image of each point.
        yx: float64 (N, 2) pixel coordinates (row, column), 0-based, pixel centres at integers.
        cls: int64 (N,) class id; 0 = background.
        class_names: Name of every class id, index 0 = background.
    """

    image: np.ndarray
    yx: np.ndarray
    cls: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", np.asarray(self.image, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "yx", np.asarray(self.yx, dtype=np.float64).reshape(-1, 2))
        object.__setattr__(self, "cls", np.asarray(self.cls, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        n = len(self.image)
        if len(self.yx) != n or len(self.cls) != n:
            raise DataError(f"points have {n} image indices, {len(self.yx)} positions and {len(self.cls)} classes.")
        if len(self.class_names) < 2:
            raise DataError("declare at least one foreground class besides background (class 0).")
        if n and (self.cls.min() < 0 or self.cls.max() >= len(self.class_names)):
            bad = int(self.cls[(self.cls < 0) | (self.cls >= len(self.class_names))][0])
            raise DataError(
                f"a point has class {bad}, but the declared classes are 0..{len(self.class_names) - 1} "
                f"({', '.join(self.class_names)})."
            )
        if n and not np.all(np.isfinite(self.yx)):
            raise DataError("some point coordinates are not finite numbers (NaN or inf).")

    @property
    def num_classes(self) -> int:
        """Number of foreground classes (CAM channels)."""
        return len(self.class_names) - 1

    def __len__(self) -> int:
        return len(self.image)

    def for_image(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(yx float64 (K, 2), cls int64 (K,)) of one image."""
        sel = self.image == index
        return self.yx[sel], self.cls[sel]

    def image_labels(self, num_images: int) -> np.ndarray:
        """float32 (num_images, num_classes) multi-hot labels of the clicked foreground classes."""
        labels = np.zeros((num_images, self.num_classes), np.float32)
        fg = self.cls > 0
        labels[self.image[fg], self.cls[fg] - 1] = 1.0
        return labels

    def counts(self) -> dict[str, int]:
        """Points per class name."""
        return {name: int(np.sum(self.cls == i)) for i, name in enumerate(self.class_names)}

    def validate(
        self,
        shapes: Sequence[tuple[int, int]],
        names: Sequence[str] | None = None,
        *,
        require_all_classes: bool = True,
    ) -> None:
        """Check the points against images of the given (H, W) shapes.

        Args:
            shapes: (H, W) of every image.
            names: Image names for the messages.
            require_all_classes: Every declared foreground class must have a point (the default, for a
                user's own data). Benchmarks on a subset of a fixed class list (e.g. the first images of
                PASCAL VOC) pass False: classes without points then simply get no positive label.

        Raises:
            DataError: a point on a missing image or outside its image, a declared foreground class with no
                point at all, or no foreground point at all; the message names the point and the fix.
        """
        names = list(names) if names is not None else [f"#{i}" for i in range(len(shapes))]
        if len(self) and (self.image.min() < 0 or self.image.max() >= len(shapes)):
            i = int(np.flatnonzero((self.image < 0) | (self.image >= len(shapes)))[0])
            raise DataError(
                f"point {i} belongs to image index {int(self.image[i])}, but there are only {len(shapes)} images."
            )
        for i, (img, (y, x)) in enumerate(zip(self.image, self.yx)):
            h, w = shapes[img]
            if not (-0.5 <= y <= h - 0.5 and -0.5 <= x <= w - 0.5):
                raise DataError(
                    f"point {i} at (y={y:.1f}, x={x:.1f}) lies outside image {names[img]!r} of size {h} x {w}; "
                    "move or delete it."
                )
        counts = self.counts()
        if not any(c > 0 for name, c in list(counts.items())[1:]):
            raise DataError(
                "there is no foreground point at all: click at least one object of a foreground class."
            )
        empty = [name for name, c in list(counts.items())[1:] if c == 0]
        if empty and require_all_classes:
            raise DataError(
                f"class(es) {', '.join(map(repr, empty))} have no points; click at least one object of each "
                "class, or remove the class."
            )

    def subset(self, mask: np.ndarray) -> "PointAnnotations":
        """The points where ``mask`` is True."""
        return PointAnnotations(self.image[mask], self.yx[mask], self.cls[mask], self.class_names)


def read_points_csv(
    path: str | Path, image_names: Sequence[str], class_names: Sequence[str] | None = None
) -> PointAnnotations:
    """Read points from ``image,y,x,class`` CSV or napari's Points CSV export.

    Args:
        path: CSV file.
        image_names: File names of the images, in stack order (for napari's index-based layout).
        class_names: Class names with background first. When None they are derived from the file:
            integer classes 0..max become ``background, class_1, ...``; named classes are sorted after
            ``background``.

    Raises:
        DataError: unreadable file, missing columns, or an image the folder does not hold.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"points file {str(path)!r} does not exist.")
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"points file {str(path)!r} is not a readable CSV file: {exc}") from exc
    if not rows:
        raise DataError(f"points file {str(path)!r} holds no points.")
    columns = {c.strip().lower(): c for c in rows[0].keys() if c is not None}
    class_col = columns.get("class") or columns.get("label")
    if class_col is None:
        raise DataError(f"points file {str(path)!r} has no 'class' column (columns: {', '.join(columns)}).")
    lookup = _image_lookup(image_names)
    images, yx, raw_cls = [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            if "image" in columns:
                key = row[columns["image"]].strip()
                if key not in lookup:
                    raise DataError(
                        f"{path.name}, line {line}: image {key!r} is not in the image folder "
                        f"(images: {', '.join(list(image_names)[:5])}{', ...' if len(image_names) > 5 else ''})."
                    )
                images.append(lookup[key])
                yx.append((float(row[columns["y"]]), float(row[columns["x"]])))
            elif "axis-0" in columns and "axis-1" in columns:
                if "axis-2" in columns:
                    images.append(int(round(float(row[columns["axis-0"]]))))
                    yx.append((float(row[columns["axis-1"]]), float(row[columns["axis-2"]])))
                else:
                    images.append(0)
                    yx.append((float(row[columns["axis-0"]]), float(row[columns["axis-1"]])))
            else:
                raise DataError(
                    f"points file {str(path)!r} needs columns image,y,x,class or napari's index,axis-0,axis-1,..."
                )
        except (KeyError, ValueError) as exc:
            raise DataError(f"{path.name}, line {line}: cannot read the point ({exc}).") from exc
        raw_cls.append(row[class_col].strip())
    cls, names = _class_ids(raw_cls, class_names, path.name)
    return PointAnnotations(np.array(images), np.array(yx), cls, names)


def _image_lookup(image_names: Sequence[str]) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for i, name in enumerate(image_names):
        lookup[str(i)] = i
        lookup[name] = i
        lookup.setdefault(Path(name).stem, i)
    return lookup


def _class_ids(raw: list[str], class_names: Sequence[str] | None, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if all(_is_int(v) for v in raw):
        ids = np.array([int(float(v)) for v in raw], dtype=np.int64)
        if class_names is None:
            class_names = ["background"] + [f"class_{i}" for i in range(1, max(int(ids.max()), 1) + 1)]
        return ids, tuple(class_names)
    if class_names is None:
        fg = sorted({v for v in raw if v.lower() != "background"})
        class_names = ["background", *fg]
    index = {name: i for i, name in enumerate(class_names)}
    index.setdefault("background", 0)
    unknown = sorted({v for v in raw if v not in index and not _is_int(v)})
    if unknown:
        raise DataError(
            f"{source}: class name(s) {', '.join(map(repr, unknown))} are not declared "
            f"(declared: {', '.join(class_names)})."
        )
    ids = np.array([int(float(v)) if _is_int(v) else index[v] for v in raw], dtype=np.int64)
    return ids, tuple(class_names)


def _is_int(value: str) -> bool:
    try:
        return float(value) == int(float(value))
    except ValueError:
        return False


def write_points_csv(path: str | Path, points: PointAnnotations, image_names: Sequence[str]) -> None:
    """Write ``image,y,x,class`` CSV (class as name) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "y", "x", "class"])
    for img, (y, x), c in zip(points.image, points.yx, points.cls):
        writer.writerow([image_names[img], f"{y:.2f}", f"{x:.2f}", points.class_names[c]])
    atomic_write_text(path, buf.getvalue())
