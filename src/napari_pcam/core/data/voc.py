"""PASCAL VOC 2012 on disk: folder layout, split lists, image-level labels and masks.

Expected layout (any of the three roots may be given as ``voc_root``)::

    <root>/VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, Annotations, ImageSets/Segmentation}

The SBD augmentation (Hariharan et al., ICCV 2011) that completes the 10,582-image ``train_aug`` split
is read either from ``benchmark_RELEASE/dataset/cls/<id>.mat`` (``GTcls.Segmentation``) or from the
common ``SegmentationClassAug`` PNG folder. Masks are int64 ``H x W`` with class ids 0-20 and
255 = ignore; palette PNGs are read as palette indices, never as colours.

The ``train_aug`` (10,582 ids) and ``val`` (1,449 ids) lists ship with the package (``voc_splits/``).
Clicks (Bearman et al., ECCV 2016) are read by :mod:`napari_pcam.core.data.clicks`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import DataError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""Class names by id: 0 = background, then the 20 VOC classes in alphabetical order (Bearman's 1-20)."""

IGNORE_INDEX = 255
"""Mask value of pixels that are not evaluated (object borders, difficult regions)."""

PACKAGED_SPLITS = ("train_aug", "val")
_VOC_FOLDERS = ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation")
_SBD_CLS = Path("benchmark_RELEASE", "dataset", "cls")
_AUG = "SegmentationClassAug"


def read_split_file(path: str | Path) -> list[str]:
    """Ids of a split list (one id per line, blank lines ignored), in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split list {str(path)!r} does not exist.")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(set(ids)) != len(ids):
        raise DataError(f"split list {str(path)!r} names some ids more than once.")
    return ids


def packaged_split(name: str) -> list[str]:
    """The ``train_aug`` (10,582 ids) or ``val`` (1,449 ids) list shipped with napari-pcam."""
    if name not in PACKAGED_SPLITS:
        raise DataError(f"no packaged split {name!r}; packaged splits: {', '.join(PACKAGED_SPLITS)}.")
    text = resources.files("napari_pcam.core.data").joinpath("voc_splits", f"{name}.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class VocLayout:
    """Resolved folders of a VOC 2012 tree and its optional SBD augmentation.

    Attributes:
        voc2012: The ``VOC2012`` folder.
        sbd_cls: SBD's ``benchmark_RELEASE/dataset/cls`` folder of ``.mat`` masks, or None.
        aug_png: A ``SegmentationClassAug`` folder of PNG masks, or None.
    """

    voc2012: Path
    sbd_cls: Path | None = None
    aug_png: Path | None = None

    @property
    def jpeg_dir(self) -> Path:
        return self.voc2012 / "JPEGImages"

    @property
    def mask_dir(self) -> Path:
        return self.voc2012 / "SegmentationClass"

    @property
    def xml_dir(self) -> Path:
        return self.voc2012 / "Annotations"

    @property
    def split_dir(self) -> Path:
        return self.voc2012 / "ImageSets" / "Segmentation"

    @classmethod
    def locate(cls, voc_root: str | Path, sbd_root: str | Path | None = None) -> "VocLayout":
        """Find the VOC 2012 folders below ``voc_root`` and the SBD masks.

        Args:
            voc_root: The folder holding ``VOCdevkit``, ``VOCdevkit`` itself, or ``VOC2012`` itself.
            sbd_root: Where SBD lives: a folder holding ``benchmark_RELEASE`` or ``SegmentationClassAug``,
                ``benchmark_RELEASE`` or its ``dataset``/``cls`` folder, or a ``SegmentationClassAug``
                folder. When None, these are looked for beside ``VOCdevkit`` and inside ``VOC2012``;
                not finding them is fine (only needed for ``train_aug`` masks).

        Raises:
            DataError: naming every place looked in, when no VOC 2012 folder, one of its sub-folders, or
                (with ``sbd_root`` given) no SBD folder is found.
        """
        voc2012 = _find_voc2012(Path(voc_root))
        missing = [f for f in _VOC_FOLDERS if not (voc2012 / f).is_dir()]
        if missing:
            raise DataError(
                f"the VOC 2012 folder {str(voc2012)!r} lacks {', '.join(missing)}; download and unpack "
                "VOCtrainval_11-May-2012.tar so that all of " + ", ".join(_VOC_FOLDERS) + " exist."
            )
        if sbd_root is None:
            base = [voc2012, voc2012.parent, voc2012.parent.parent]
            sbd_cls = _first_dir([b / _SBD_CLS for b in base[1:]])
            aug_png = _first_dir([b / _AUG for b in base])
            return cls(voc2012, sbd_cls, aug_png)
        root = Path(sbd_root)
        mat_candidates = [root / _SBD_CLS, root / "dataset" / "cls", root / "cls", root]
        sbd_cls = _first_dir([p for p in mat_candidates if p.name == "cls"])
        aug_png = _first_dir([root / _AUG, root] if root.name == _AUG else [root / _AUG])
        if sbd_cls is None and aug_png is None:
            looked = [str(p) for p in mat_candidates if p.name == "cls"] + [str(root / _AUG)]
            raise DataError(
                f"no SBD masks under {str(root)!r}: looked for a 'cls' folder of .mat files and a "
                f"{_AUG!r} folder at {', '.join(looked)}."
            )
        return cls(voc2012, sbd_cls, aug_png)

    def split_ids(self, name: str) -> list[str]:
        """Ids of split ``name``: ``ImageSets/Segmentation/<name>.txt`` if present, else the packaged list."""
        path = self.split_dir / f"{name}.txt"
        if path.is_file():
            return read_split_file(path)
        if name in PACKAGED_SPLITS:
            return packaged_split(name)
        raise DataError(
            f"no split list {name!r}: looked for {str(path)!r}; packaged splits are {', '.join(PACKAGED_SPLITS)}."
        )

    def image_path(self, image_id: str) -> Path:
        return self.jpeg_dir / f"{image_id}.jpg"

    def mask_candidates(self, image_id: str) -> list[Path]:
        """Mask files tried in order: VOC's ``SegmentationClass``, then ``SegmentationClassAug``, then SBD."""
        paths = [self.mask_dir / f"{image_id}.png"]
        if self.aug_png is not None:
            paths.append(self.aug_png / f"{image_id}.png")
        if self.sbd_cls is not None:
            paths.append(self.sbd_cls / f"{image_id}.mat")
        return paths

    def mask_path(self, image_id: str) -> Path:
        """The first existing mask file of an image; DataError listing every path tried otherwise."""
        paths = self.mask_candidates(image_id)
        for path in paths:
            if path.is_file():
                return path
        hint = "" if len(paths) > 1 else " (no SBD folder was found: pass --sbd-root for train_aug masks)"
        raise DataError(f"no mask for image {image_id!r}: looked for {', '.join(map(str, paths))}{hint}.")


def _find_voc2012(root: Path) -> Path:
    candidates = [root / "VOCdevkit" / "VOC2012", root / "VOC2012", root]
    for path in candidates:
        if (path / "JPEGImages").is_dir():
            return path
    raise DataError(
        f"no VOC 2012 folder under {str(root)!r}: looked for JPEGImages in "
        + ", ".join(repr(str(p)) for p in candidates)
        + ". Give the folder that holds VOCdevkit, VOCdevkit itself, or VOC2012 itself."
    )


def _first_dir(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_dir()), None)


def read_xml_labels(path: str | Path) -> np.ndarray:
    """Image-level labels of a VOC XML annotation: sorted unique class ids (int64, 1-20).

    Every ``<object><name>`` counts, including objects marked ``difficult`` or ``truncated`` (they are
    in the image; DeepLab-style ``train_aug`` masks label them too). Part names (``<part><name>``) are not
    objects and are skipped.

    Raises:
        DataError: missing or malformed file, or an object whose name is not a VOC class.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation {str(path)!r} does not exist.")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"annotation {str(path)!r} is not valid XML: {exc}") from exc
    ids = set()
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES[1:]:
            raise DataError(f"annotation {str(path)!r} has an object {name!r} that is not a VOC class.")
        ids.add(VOC_CLASSES.index(name))
    return np.array(sorted(ids), dtype=np.int64)


def read_voc_mask(path: str | Path) -> np.ndarray:
    """Read a VOC/SBD mask as int64 ``H x W`` class ids (0-20, 255 = ignore).

    Palette (``P``) and grayscale (``L``) PNGs give their stored indices; ``.mat`` files give SBD's
    ``GTcls.Segmentation``.

    Raises:
        DataError: unreadable file, colour (RGB) PNG, or values other than 0-20 and 255.
    """
    path = Path(path)
    try:
        if path.suffix == ".mat":
            from scipy.io import loadmat

            mask = np.asarray(loadmat(path, struct_as_record=False, squeeze_me=True)["GTcls"].Segmentation)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode not in ("P", "L"):
                    raise DataError(
                        f"mask {str(path)!r} is a {im.mode} image; VOC masks are palette or grayscale PNGs "
                        "holding class ids (convert colour masks to indices first)."
                    )
                mask = np.asarray(im)
    except DataError:
        raise
    except Exception as exc:  # PIL/scipy raise many types for corrupt files
        raise DataError(f"cannot read mask {str(path)!r}: {exc.__class__.__name__}: {exc}") from exc
    mask = mask.astype(np.int64)
    bad = (mask > len(VOC_CLASSES) - 1) & (mask != IGNORE_INDEX)
    if mask.ndim != 2 or bad.any() or (mask < 0).any():
        raise DataError(f"mask {str(path)!r} is not an H x W map of VOC class ids (0-20, 255 = ignore).")
    return mask


def mask_labels(mask: np.ndarray) -> np.ndarray:
    """Sorted foreground class ids (int64) present in a mask (0 and 255 excluded)."""
    values = np.unique(mask)
    return values[(values > 0) & (values != IGNORE_INDEX)].astype(np.int64)


def list_stems(folder: Path, suffix: str) -> set[str]:
    """File stems with ``suffix`` in a folder (one directory scan; empty set for a missing folder)."""
    if not folder.is_dir():
        return set()
    with os.scandir(folder) as entries:
        return {e.name[: -len(suffix)] for e in entries if e.name.endswith(suffix)}
