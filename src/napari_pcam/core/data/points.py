"""Point annotations: image index, (y, x) position and class of every click.

Class 0 is background: it gets no CAM of its own, and background clicks are negatives for every class.
Image-level labels are the foreground classes clicked in each image.

Two CSV layouts are read: ``image,y,x,class`` (image = file name, file stem or 0-based index; class =
whole-number id or class name), with an optional ``z`` column after ``image`` naming the slice of a stack
file (``image,z,y,x,class``; a slice can also be named directly, ``cells_z003.tif``), and napari's own
Points export (``index,axis-0,axis-1[,axis-2],<features>``, where a 3D layer's ``axis-0`` is the index of
the image, i.e. the slice of a folder holding one stack, and a ``class`` or ``label`` feature holds the class).
Every error names the file and the line.
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
    path: str | Path,
    image_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    *,
    sources: Sequence[tuple[str, int | None]] | None = None,
) -> PointAnnotations:
    """Read points from ``image,y,x,class`` / ``image,z,y,x,class`` CSV or napari's Points CSV export.

    Args:
        path: CSV file.
        image_names: Names of the images, in stack order (for napari's index-based layout).
        class_names: Class names with background first. When None they are derived from the file:
            integer classes 0..max become ``background, class_1, ...``; named classes are sorted after
            ``background``.
        sources: (file name, slice index or None) of every image (:attr:`ImageStack.sources`): with them the
            ``image`` column may name a stack file and a ``z`` column its slice.

    Raises:
        DataError: unreadable file, missing columns or fields, a number that is not one, a class id that is
            not a whole number, or an image the folder does not hold; the message names the line.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a CSV file" if path.is_dir() else "does not exist"
        raise DataError(f"points file {str(path)!r} {what}.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"points file {str(path)!r} is not a readable CSV file: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [c for c in (reader.fieldnames or []) if c is not None]
    columns = {c.strip().lower(): c for c in header}
    rows = _rows(reader, path.name, len(header))
    if not rows:
        raise DataError(f"points file {str(path)!r} holds no points.")
    class_col = columns.get("class") or columns.get("label")
    if class_col is None:
        raise DataError(f"points file {str(path)!r} has no 'class' column (columns: {', '.join(columns)}).")
    if "image" not in columns and not ("axis-0" in columns and "axis-1" in columns):
        raise DataError(f"points file {str(path)!r} needs columns image,y,x,class (optionally z) or napari's "
                        f"index,axis-0,axis-1,...; it has {', '.join(columns)}.")
    where = _Where(image_names, sources, path.name)
    images, yx, raw_cls, lines = [], [], [], []
    for line, row in rows:
        field = _Fields(row, columns, path.name, line)
        if "image" in columns:
            z = field.number("z", integer=True) if "z" in columns and row[columns["z"]].strip() else None
            images.append(where.index(row[columns["image"]].strip(), z, line))
            yx.append((field.number("y"), field.number("x")))
        elif "axis-2" in columns:
            images.append(int(round(field.number("axis-0"))))
            yx.append((field.number("axis-1"), field.number("axis-2")))
        else:
            images.append(0)
            yx.append((field.number("axis-0"), field.number("axis-1")))
        raw_cls.append(row[class_col].strip())
        lines.append(line)
    cls, names = _class_ids(raw_cls, class_names, path.name, lines)
    return PointAnnotations(np.array(images), np.array(yx), cls, names)


def _rows(reader: csv.DictReader, source: str, fields: int) -> list[tuple[int, dict]]:
    """(line number, row) of every row; a row with fewer or more fields than the header is an error."""
    rows = []
    try:
        for row in reader:
            extra = [v for v in row.get(None, []) if v.strip()]
            missing = [k for k, v in row.items() if k is not None and v is None]
            if missing or extra:
                n = fields - len(missing) + len(row.get(None, []))
                raise DataError(f"{source}, line {reader.line_num}: {n} fields, but the header has {fields}"
                                f"{' (missing: ' + ', '.join(missing) + ')' if missing else ''}.")
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DataError(f"{source}, line {reader.line_num}: not readable as CSV ({exc}).") from exc
    return rows


class _Fields:
    """Numbers of one CSV row, with errors that name the file, the line and the column."""

    def __init__(self, row: dict, columns: dict[str, str], source: str, line: int):
        self.row, self.columns, self.where = row, columns, f"{source}, line {line}"

    def number(self, name: str, *, integer: bool = False) -> float:
        if name not in self.columns:
            raise DataError(f"{self.where}: there is no {name!r} column (columns: {', '.join(self.columns)}).")
        text = self.row[self.columns[name]].strip()
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{self.where}: {name}={text!r} is not a number.") from None
        if not np.isfinite(value):
            raise DataError(f"{self.where}: {name}={text!r} is not a finite number.")
        if integer and value != int(value):
            raise DataError(f"{self.where}: {name}={text!r} is not a whole number (slices are counted 0, 1, 2, ...).")
        return value


class _Where:
    """Image index of an ``image`` (and ``z``) cell: a name, a stem, an index, or a stack file and a slice."""

    def __init__(self, image_names: Sequence[str], sources, source: str):
        self.names, self.source = list(image_names), source
        self.lookup = _image_lookup(image_names)
        self.stacks: dict[str, dict[int, int]] = {}
        for i, (file, z) in enumerate(sources or []):
            if z is not None:
                for key in (file, Path(file).stem):
                    self.stacks.setdefault(key, {})[z] = i

    def index(self, key: str, z: float | None, line: int) -> int:
        where = f"{self.source}, line {line}"
        if key in self.stacks:
            slices = self.stacks[key]
            if z is None:
                raise DataError(f"{where}: {key!r} is a stack of {len(slices)} slices; add a z column "
                                f"(image,z,y,x,class) or name the slice (e.g. {self.names[slices[0]]!r}).")
            if int(z) not in slices:
                raise DataError(f"{where}: z={int(z)} does not exist in {key!r} (slices 0..{len(slices) - 1}).")
            return slices[int(z)]
        if key not in self.lookup:
            shown = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
            raise DataError(f"{where}: image {key!r} is not in the image folder (images: {shown}).")
        if z not in (None, 0):
            raise DataError(f"{where}: image {key!r} is a single 2D image, but z={int(z)}; use z=0 or leave it empty.")
        return self.lookup[key]


def _image_lookup(image_names: Sequence[str]) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for i, name in enumerate(image_names):
        lookup[str(i)] = i
        lookup[name] = i
        lookup.setdefault(Path(name).stem, i)
    return lookup


def _class_ids(raw: list[str], class_names: Sequence[str] | None, source: str,
               lines: Sequence[int]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class ids of the raw class cells: numbers are ids (whole, >= 0), anything else a class name."""
    numbers = [_number(v) for v in raw]
    for value, number, line in zip(raw, numbers, lines):
        if value == "":
            raise DataError(f"{source}, line {line}: the class is empty; give a class id or name.")
        if number is not None and not (np.isfinite(number) and number == int(number) and number >= 0):
            raise DataError(f"{source}, line {line}: class {value!r} is not a class id (0 = background, 1, 2, ... "
                            "whole numbers) nor a class name.")
    if class_names is None:
        if all(n is not None for n in numbers):
            top = max(int(n) for n in numbers)
            class_names = ["background"] + [f"class_{i}" for i in range(1, max(top, 1) + 1)]
        else:
            class_names = ["background", *sorted({v for v, n in zip(raw, numbers) if n is None
                                                  and v.lower() != "background"})]
    index = {name: i for i, name in enumerate(class_names)}
    index.setdefault("background", 0)
    unknown = sorted({v for v, n in zip(raw, numbers) if n is None and v not in index})
    if unknown:
        raise DataError(
            f"{source}: class name(s) {', '.join(map(repr, unknown))} are not declared "
            f"(declared: {', '.join(class_names)})."
        )
    ids = np.array([int(n) if n is not None else index[v] for v, n in zip(raw, numbers)], dtype=np.int64)
    for value, i, line in zip(raw, ids, lines):
        if i >= len(class_names):
            raise DataError(f"{source}, line {line}: class {value!r} is not declared "
                            f"(classes 0..{len(class_names) - 1}: {', '.join(class_names)}).")
    return ids, tuple(class_names)


def _number(value: str) -> float | None:
    """The value as a number (inf and nan included), or None when it is not one (a class name)."""
    try:
        return float(value)
    except ValueError:
        return None


def write_points_csv(path: str | Path, points: PointAnnotations, image_names: Sequence[str]) -> None:
    """Write ``image,y,x,class`` CSV (class as name) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "y", "x", "class"])
    for img, (y, x), c in zip(points.image, points.yx, points.cls):
        writer.writerow([image_names[img], f"{y:.2f}", f"{x:.2f}", points.class_names[c]])
    atomic_write_text(path, buf.getvalue())
