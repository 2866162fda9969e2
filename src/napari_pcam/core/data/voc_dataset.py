"""Lazy access to the images, masks and image-level labels of one VOC 2012 split.

Nothing is read up front except directory listings (to report missing files at once): images, masks and
annotations are read when asked for, and image shapes come from the JPEG header.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError
from ..run_folder import fingerprint
from .images import ImageStack, LazyImages
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

    def to_image_stack(self, indices: Sequence[int] | None = None, *, lazy: bool = True) -> ImageStack:
        """The given images (all by default) as an :class:`ImageStack` named by id.

        With ``lazy`` (the default) the JPEGs are decoded one at a time when a stage reads them (only their
        headers are read now), so ``train_aug`` never sits in memory; otherwise they are loaded now.
        """
        indices = list(range(len(self)) if indices is None else indices)
        names = [self.ids[i] for i in indices]
        if not lazy:
            return ImageStack([self.image(i) for i in indices], names)
        stats = [self.image_path(i).stat() for i in indices]
        key = fingerprint([str(self.image_path(i)) for i in indices], [(s.st_size, s.st_mtime_ns) for s in stats])
        read = functools.partial(_read_indexed, self, tuple(indices))  # picklable, for loader workers
        images = LazyImages(read, [self.shape(i) for i in indices], 3, key)
        return ImageStack(images, names)

    def masks(self, indices: Sequence[int] | None = None) -> "LazyMasks":
        """The masks of the given images (all by default) as uint8 arrays read on access."""
        return LazyMasks(self, list(range(len(self)) if indices is None else indices))

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


def _read_indexed(dataset: VocDataset, indices: tuple[int, ...], j: int) -> np.ndarray:
    return dataset.image(indices[j])


class LazyMasks(Sequence):
    """uint8 ``H x W`` VOC masks (0-20, 255 = ignore) read one at a time on access.

    Run folders fingerprint it by its ``repr`` (mask paths, sizes and modification times), not by pixels.
    """

    def __init__(self, dataset: VocDataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)
        paths = [dataset.layout.mask_path(dataset.ids[i]) for i in self.indices]
        stats = [p.stat() for p in paths]
        self.key = fingerprint([str(p) for p in paths], [(s.st_size, s.st_mtime_ns) for s in stats])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        return np.asarray(self.dataset.mask(self.indices[i]), np.uint8)  # 0-20 and 255 fit in uint8

    def __repr__(self) -> str:
        return f"LazyMasks({self.key!r})"


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
