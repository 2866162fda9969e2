"""Bearman et al.'s human clicks on PASCAL VOC 2012 as :class:`PointAnnotations`.

Reference: A. Bearman, O. Russakovsky, V. Ferrari, L. Fei-Fei, "What's the Point: Semantic Segmentation
with Point Supervision", ECCV 2016.

The JSON maps an image id to its clicks ``{"x", "y", "cls", "rank"}``: x, y zero-indexed pixel
coordinates (floats), cls 1-20 (VOC alphabetical order, as :data:`VOC_CLASSES`), rank N = the worker's
click on the Nth instance of that class. Modes:

- ``"1point"``: rank-1 clicks of ``pascal2012_trainval_main.json`` (one click per class and image);
- ``"allpoints"``: every click of the main file (one per instance);
- ``"3annotators"``: rank-1 clicks of the main file and of ``pascal2012_trainval_supp.json`` (two more
  workers per class and image).

A click lies outside its ``H x W`` image when it is in no pixel: ``x < 0``, ``x >= W``, ``y < 0`` or
``y >= H``. Such clicks are clipped to the border pixel, counted and warned about. Coordinates are kept as
given otherwise (the half-pixel difference between pixel-corner and pixel-centre conventions is below the
precision of a click), except that clicks in the last row or column (``W - 1 < x < W``) are moved onto
its centre so that rounding stays inside the image.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Collection, Literal, Mapping, Sequence

import numpy as np

from ..errors import DataError
from .points import PointAnnotations
from .voc import VOC_CLASSES

ClickMode = Literal["1point", "allpoints", "3annotators"]
CLICK_MODES = ("1point", "allpoints", "3annotators")
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ImageClicks:
    """Clicks of one image.

    Attributes:
        yx: float64 (K, 2) click positions (row, column) as stored (not clipped).
        cls: int64 (K,) VOC class ids 1-20.
        rank: int64 (K,) instance rank of each click (1 = first instance of its class).
    """

    yx: np.ndarray
    cls: np.ndarray
    rank: np.ndarray

    def __len__(self) -> int:
        return len(self.cls)

    def select(self, keep: np.ndarray) -> "ImageClicks":
        return ImageClicks(self.yx[keep], self.cls[keep], self.rank[keep])


def read_click_json(path: str | Path) -> dict[str, ImageClicks]:
    """Read a click JSON of Bearman et al. (all ranks), validating every click.

    Raises:
        DataError: missing or unreadable file, or a click without numeric x, y, cls, rank, with a class
            outside 1-20, a rank below 1 or a non-finite position (names the image and the click).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"click file {str(path)!r} does not exist (e.g. pascal2012_trainval_main.json).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"click file {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"click file {str(path)!r} must hold an object {{image_id: [clicks]}}.")
    return {str(image_id): _parse_clicks(entries, str(image_id), path.name) for image_id, entries in data.items()}


def _parse_clicks(entries: object, image_id: str, source: str) -> ImageClicks:
    if not isinstance(entries, list):
        raise DataError(f"{source}: image {image_id!r} must map to a list of clicks.")
    rows = []
    for k, click in enumerate(entries):
        try:
            rows.append([float(click["y"]), float(click["x"]), float(click["cls"]), float(click["rank"])])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{source}: click {k} of image {image_id!r} needs numeric 'x', 'y', 'cls' and 'rank' ({exc!r})."
            ) from exc
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    cls, rank = arr[:, 2], arr[:, 3]
    bad = ~np.isfinite(arr).all(axis=1) | (cls != np.round(cls)) | (cls < 1) | (cls > len(VOC_CLASSES) - 1)
    bad |= (rank != np.round(rank)) | (rank < 1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: click {k} of image {image_id!r} is invalid (needs finite x, y, an integer cls in 1-20 "
            f"and an integer rank >= 1): {entries[k]!r}."
        )
    return ImageClicks(arr[:, :2].copy(), cls.astype(np.int64), rank.astype(np.int64))


def select_clicks(
    clicks: Mapping[str, ImageClicks], mode: Literal["1point", "allpoints"]
) -> dict[str, ImageClicks]:
    """Rank-1 clicks (``"1point"``) or all clicks (``"allpoints"``) of every image."""
    if mode == "allpoints":
        return dict(clicks)
    if mode == "1point":
        return {k: c.select(c.rank == 1) for k, c in clicks.items()}
    raise DataError(f"click selection must be '1point' or 'allpoints', not {mode!r}.")


def load_clicks(
    path: str | Path, mode: ClickMode = "1point", *, supp_path: str | Path | None = None
) -> dict[str, ImageClicks]:
    """Read the click JSON(s) and keep the clicks of ``mode`` (see the module docstring).

    Args:
        path: ``pascal2012_trainval_main.json``.
        mode: ``"1point"``, ``"allpoints"`` or ``"3annotators"``.
        supp_path: ``pascal2012_trainval_supp.json``; required by, and only allowed with, ``"3annotators"``.
    """
    if mode not in CLICK_MODES:
        raise DataError(f"click mode must be one of {', '.join(CLICK_MODES)}, not {mode!r}.")
    if (mode == "3annotators") != (supp_path is not None):
        raise DataError(
            "the supplementary click file (pascal2012_trainval_supp.json) is needed for, and only used by, "
            f"mode '3annotators' (mode is {mode!r}, supplementary file {'given' if supp_path else 'missing'})."
        )
    if mode != "3annotators":
        return select_clicks(read_click_json(path), mode)
    main = select_clicks(read_click_json(path), "1point")
    return merge_clicks(main, select_clicks(read_click_json(supp_path), "1point"))


def merge_clicks(*sources: Mapping[str, ImageClicks]) -> dict[str, ImageClicks]:
    """Concatenate the clicks of several annotation files image by image (union of the ids)."""
    merged: dict[str, ImageClicks] = {}
    for source in sources:
        for image_id, c in source.items():
            if image_id in merged:
                old = merged[image_id]
                c = ImageClicks(
                    np.concatenate([old.yx, c.yx]), np.concatenate([old.cls, c.cls]), np.concatenate([old.rank, c.rank])
                )
            merged[image_id] = c
    return merged


@dataclass(frozen=True)
class ClickStats:
    """What happened when clicks were matched to images; nothing is dropped silently.

    Attributes:
        images: Number of requested image ids.
        images_with_clicks: Requested ids with at least one click.
        clicks: Clicks returned.
        clipped: Clicks outside their image, clipped to the border.
        json_ids: Ids in the click data.
        json_ids_not_requested: Click ids not among the requested ids (e.g. val images for train_aug).
        json_ids_not_in_voc: Click ids not among the known VOC ids; None when those were not given.
        clicked_not_labelled: (image, class) pairs clicked but absent from the image-level labels (the
            clicks are kept); None when no labels were given.
        labelled_not_clicked: (image, class) pairs in the image-level labels without any click.
        examples: A few of the offending ids, for the report.
    """

    images: int
    images_with_clicks: int
    clicks: int
    clipped: int
    json_ids: int
    json_ids_not_requested: int
    json_ids_not_in_voc: int | None = None
    clicked_not_labelled: int | None = None
    labelled_not_clicked: int | None = None
    examples: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        out = asdict(self)
        out["examples"] = list(self.examples)
        return out

    def problems(self) -> list[str]:
        """Human-readable lines for every non-zero problem count."""
        lines = []
        if self.clipped:
            lines.append(f"{self.clipped} of {self.clicks} clicks lay outside their image and were clipped")
        if self.json_ids_not_in_voc:
            lines.append(f"{self.json_ids_not_in_voc} click ids are not VOC images")
        if self.clicked_not_labelled:
            lines.append(f"{self.clicked_not_labelled} (image, class) pairs are clicked but not in the labels")
        if self.labelled_not_clicked:
            lines.append(f"{self.labelled_not_clicked} (image, class) pairs are labelled but have no click")
        return lines


def clip_clicks(yx: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Clip (K, 2) (row, column) clicks into an ``H x W`` image; also returns how many were outside."""
    h, w = shape
    outside = (yx[:, 0] < 0) | (yx[:, 0] >= h) | (yx[:, 1] < 0) | (yx[:, 1] >= w)
    clipped = np.stack([np.clip(yx[:, 0], 0, h - 1), np.clip(yx[:, 1], 0, w - 1)], axis=1)
    return clipped, int(outside.sum())


def clicks_to_points(
    clicks: Mapping[str, ImageClicks],
    ids: Sequence[str],
    shapes: Sequence[tuple[int, int]],
    *,
    labels: Sequence[np.ndarray] | None = None,
    voc_ids: Collection[str] | None = None,
    warn: bool = True,
) -> tuple[PointAnnotations, ClickStats]:
    """Turn the clicks of the images ``ids`` into :class:`PointAnnotations` (image index = position in ids).

    Args:
        clicks: From :func:`load_clicks`.
        ids: Image ids in dataset order.
        shapes: (H, W) of every image, aligned with ``ids``.
        labels: Image-level class ids (1-20) of every image, to count mismatches with the clicked classes.
        voc_ids: Every id of the VOC tree, to count click ids that are not VOC images.
        warn: Emit a ``UserWarning`` listing the problems (clipped clicks, mismatches, unknown ids).

    Raises:
        DataError: ``shapes`` or ``labels`` not aligned with ``ids``.
    """
    if len(shapes) != len(ids) or (labels is not None and len(labels) != len(ids)):
        n_labels = "no" if labels is None else len(labels)
        raise DataError(f"{len(ids)} ids but {len(shapes)} shapes and {n_labels} labels: give one per id.")
    image, yx, cls, clipped, with_clicks = [], [], [], 0, 0
    for i, (image_id, shape) in enumerate(zip(ids, shapes)):
        c = clicks.get(image_id)
        if c is None or not len(c):
            continue
        pos, n_out = clip_clicks(c.yx, shape)
        image.append(np.full(len(c), i, np.int64))
        yx.append(pos)
        cls.append(c.cls)
        clipped += n_out
        with_clicks += 1
    points = PointAnnotations(
        np.concatenate(image) if image else np.zeros(0, np.int64),
        np.concatenate(yx) if yx else np.zeros((0, 2)),
        np.concatenate(cls) if cls else np.zeros(0, np.int64),
        VOC_CLASSES,
    )
    requested = set(ids)
    mismatch = _mismatches(clicks, ids, labels) if labels is not None else (None, None, ())
    stats = ClickStats(
        images=len(ids),
        images_with_clicks=with_clicks,
        clicks=len(points),
        clipped=clipped,
        json_ids=len(clicks),
        json_ids_not_requested=sum(1 for k in clicks if k not in requested),
        json_ids_not_in_voc=None if voc_ids is None else len(set(clicks) - set(voc_ids)),
        clicked_not_labelled=mismatch[0],
        labelled_not_clicked=mismatch[1],
        examples=mismatch[2],
    )
    if warn and stats.problems():
        warnings.warn("VOC clicks: " + "; ".join(stats.problems()) + ".", UserWarning, stacklevel=2)
    return points, stats


def _mismatches(
    clicks: Mapping[str, ImageClicks], ids: Sequence[str], labels: Sequence[np.ndarray]
) -> tuple[int, int, tuple[str, ...]]:
    clicked_only, labelled_only, examples = 0, 0, []
    for image_id, image_labels in zip(ids, labels):
        c = clicks.get(image_id)
        clicked = set(c.cls.tolist()) if c is not None else set()
        labelled = set(np.asarray(image_labels).tolist())
        extra, missing = clicked - labelled, labelled - clicked
        clicked_only += len(extra)
        labelled_only += len(missing)
        if (extra or missing) and len(examples) < _MAX_EXAMPLES:
            names = [f"clicked {VOC_CLASSES[k]} not labelled" for k in sorted(extra)]
            names += [f"labelled {VOC_CLASSES[k]} not clicked" for k in sorted(missing)]
            examples.append(f"{image_id}: {', '.join(names)}")
    return clicked_only, labelled_only, tuple(examples)
