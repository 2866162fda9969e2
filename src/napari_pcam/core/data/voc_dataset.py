"""Lazy access to the images, masks and image-level labels of one VOC 2012 split.

Nothing is read up front except directory listings (to report missing files at once): images, masks and
annotations are read when asked for, and image shapes come from the JPEG header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..errors import DataError
from .images import ImageStack
from .voc import VOC_CLASSES, VocLayout, list_stems, mask_labels, read_voc_mask, read_xml_labels

LabelSource = Literal["xml", "mask"]


class VocDataset:
    """The images of a list of VOC ids, read on demand.

    Args:
        layout: Located VOC tree (:meth:`VocLayout.locate`).
        ids: Image ids, e.g. ``layout.split_ids("train_aug")``.
        label_source: Image-level labels from the XML annotations (``"xml"``, every object counts) or
            from the masks (``"mask"``).
        require_masks: Check up front that every id has a mask (needed for evaluation and training
            labels from masks).

    Raises:
        DataError: some ids have no JPEG (or no mask / annotation when needed); the message counts them,
            names the first ones and the folder looked in.
    """

    class_names = VOC_CLASSES

    def __init__(
        self,
        layout: VocLayout,
        ids: Sequence[str],
        *,
        label_source: LabelSource = "xml",
        require_masks: bool = False,
    ) -> None:
        if label_source not in ("xml", "mask"):
            raise DataError(f"label_source must be 'xml' or 'mask', not {label_source!r}.")
        self.layout = layout
        self.ids = tuple(ids)
        self.label_source = label_source
        if not self.ids:
            raise DataError("the VOC id list is empty.")
        _require(self.ids, list_stems(layout.jpeg_dir, ".jpg"), "image", f"{layout.jpeg_dir}/<id>.jpg")
        if label_source == "xml":
            _require(self.ids, list_stems(layout.xml_dir, ".xml"), "annotation", f"{layout.xml_dir}/<id>.xml")
        if require_masks or label_source == "mask":
            self._check_masks()
        self._shapes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"VocDataset({len(self)} images from {str(self.layout.voc2012)!r}, labels from {self.label_source})"

    def image_path(self, i: int) -> Path:
        return self.layout.image_path(self.ids[i])

    def image(self, i: int) -> np.ndarray:
        """uint8 ``H x W x 3`` RGB image ``i``."""
        from PIL import Image

        path = self.image_path(i)
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as exc:  # PIL raises many types for corrupt files
            raise DataError(f"cannot read image {str(path)!r}: {exc.__class__.__name__}: {exc}") from exc

    def shape(self, i: int) -> tuple[int, int]:
        """(H, W) of image ``i`` from its JPEG header (cached; the pixels are not decoded)."""
        if i not in self._shapes:
            from PIL import Image

            path = self.image_path(i)
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except Exception as exc:
                raise DataError(f"cannot read image {str(path)!r}: {exc.__class__.__name__}: {exc}") from exc
            self._shapes[i] = (h, w)
        return self._shapes[i]

    def shapes(self) -> list[tuple[int, int]]:
        """(H, W) of every image (reads every JPEG header once)."""
        return [self.shape(i) for i in range(len(self))]

    def mask(self, i: int) -> np.ndarray:
        """int64 ``H x W`` mask of image ``i`` (0-20, 255 = ignore); see :meth:`VocLayout.mask_path`."""
        mask = read_voc_mask(self.layout.mask_path(self.ids[i]))
        if mask.shape != self.shape(i):
            raise DataError(f"mask of {self.ids[i]!r} is {mask.shape}, but its image is {self.shape(i)}.")
        return mask

    def labels(self, i: int) -> np.ndarray:
        """Sorted foreground class ids (int64, 1-20) of image ``i`` from the chosen label source."""
        if self.label_source == "xml":
            return read_xml_labels(self.layout.xml_dir / f"{self.ids[i]}.xml")
        return mask_labels(self.mask(i))

    def all_labels(self) -> list[np.ndarray]:
        """:meth:`labels` of every image."""
        return [self.labels(i) for i in range(len(self))]

    def label_matrix(self) -> np.ndarray:
        """float32 ``N x 20`` multi-hot image-level labels (column c-1 = class c)."""
        out = np.zeros((len(self), len(VOC_CLASSES) - 1), np.float32)
        for i in range(len(self)):
            out[i, self.labels(i) - 1] = 1.0
        return out

    def subset(self, indices: Sequence[int]) -> "VocDataset":
        """A dataset of the images at ``indices`` (e.g. ``range(n)`` for ``--max-images n``)."""
        return VocDataset(self.layout, [self.ids[i] for i in indices], label_source=self.label_source)

    def to_image_stack(self, indices: Sequence[int] | None = None) -> ImageStack:
        """Load the given images (all by default) into memory as an :class:`ImageStack` named by id."""
        indices = range(len(self)) if indices is None else indices
        return ImageStack([self.image(i) for i in indices], [self.ids[i] for i in indices])

    def _check_masks(self) -> None:
        layout = self.layout
        found = list_stems(layout.mask_dir, ".png")
        looked = [f"{layout.mask_dir}/<id>.png"]
        if layout.aug_png is not None:
            found |= list_stems(layout.aug_png, ".png")
            looked.append(f"{layout.aug_png}/<id>.png")
        if layout.sbd_cls is not None:
            found |= list_stems(layout.sbd_cls, ".mat")
            looked.append(f"{layout.sbd_cls}/<id>.mat")
        hint = "" if len(looked) > 1 else " (no SBD folder was found: pass --sbd-root for train_aug masks)"
        _require(self.ids, found, "mask", " or ".join(looked) + hint)


def _require(ids: Sequence[str], found: set[str], what: str, where: str) -> None:
    missing = [i for i in ids if i not in found]
    if missing:
        first = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} of {len(ids)} ids have no {what} ({first}); looked for {where}.")


def open_voc(
    voc_root: str | Path,
    split: str,
    *,
    sbd_root: str | Path | None = None,
    label_source: LabelSource = "xml",
    require_masks: bool = False,
    max_images: int | None = None,
) -> VocDataset:
    """Locate a VOC tree and open one split (``train_aug``, ``val``, ``train`` or any list in ImageSets).

    Args:
        voc_root: See :meth:`VocLayout.locate`.
        split: Split name.
        sbd_root: See :meth:`VocLayout.locate`.
        label_source: ``"xml"`` or ``"mask"``.
        require_masks: Check that every image has a mask.
        max_images: Keep only the first ``max_images`` ids of the split (quick runs).
    """
    layout = VocLayout.locate(voc_root, sbd_root)
    ids = layout.split_ids(split)
    if max_images is not None:
        if max_images < 1:
            raise DataError(f"max_images must be at least 1, not {max_images}.")
        ids = ids[:max_images]
    return VocDataset(layout, ids, label_source=label_source, require_masks=require_masks)
