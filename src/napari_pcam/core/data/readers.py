"""Reading a folder of images (TIFF via tifffile, PNG, JPEG) and matching masks."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .images import ImageStack

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {str(folder)!r} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(
            f"image folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})."
        )
    return files


def read_image(path: str | Path) -> np.ndarray:
    """Read one image as ``H x W`` or ``H x W x C``; a clear error for unreadable files."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode == "P":
                    arr = np.asarray(im)  # palette masks keep their indices
                else:
                    arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "I;16", "I", "F", "RGB") else im)
    except Exception as exc:  # PIL and tifffile raise many types for corrupt files
        raise DataError(f"cannot read image {str(path)!r}: {exc.__class__.__name__}: {exc}") from exc
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] <= 8 and arr.shape[-1] > 8:  # C x H x W TIFF -> H x W x C
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim not in (2, 3):
        raise DataError(
            f"image {str(path)!r} has shape {arr.shape}; expected a 2D image (H x W or H x W x C). "
            "Split 3D stacks into one file per slice."
        )
    return arr


def read_image_folder(folder: str | Path) -> ImageStack:
    """All images of a folder as an :class:`ImageStack` named by file name."""
    files = list_images(folder)
    return ImageStack([read_image(p) for p in files], [p.name for p in files])


def read_masks(folder: str | Path, image_names: Sequence[str]) -> list[np.ndarray]:
    """Masks matched to images by file stem (``a.png`` for image ``a.jpg``); int64 ``H x W`` arrays."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"mask folder {str(folder)!r} does not exist.")
    by_stem = {p.stem: p for p in list_images(folder)}
    masks = []
    for name in image_names:
        stem = Path(name).stem
        if stem not in by_stem:
            raise DataError(f"no mask for image {name!r} in {str(folder)!r} (looked for {stem}.png/.tif).")
        mask = read_image(by_stem[stem])
        if mask.ndim == 3:
            raise DataError(f"mask {str(by_stem[stem])!r} has several channels; masks must be single-channel label images.")
        masks.append(mask.astype(np.int64))
    return masks
