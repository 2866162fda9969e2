"""Reading a folder of images (TIFF via tifffile, PNG, JPEG) and matching masks.

A multi-page or 3D TIFF becomes its 2D slices (rule: :mod:`.stacks`), named ``<stem>_z<k><suffix>``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .images import ImageStack
from .stacks import layout

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
# Uncompressed TIFFs of more pixels than this are memory-mapped instead of read: their pixels come from the
# file where they are sliced (e.g. tile by tile by ``segment``), so a 10,000 x 10,000 image is never one
# array in memory. Compressed TIFFs, PNG and JPEG are decoded whole.
MEMMAP_PIXELS = 4096 * 4096


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DataError(f"image folder {str(folder)!r} {what}.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(
            f"image folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})."
        )
    return files


def read_array(path: str | Path) -> tuple[np.ndarray, str | None]:
    """A file's pixels as stored, with tifffile's axes letters (TIFF) or ``YX`` / ``YXS`` (PNG, JPEG).

    The letters are None where the file has no axes metadata, including files tifffile wrote without an
    ``axes`` entry (tifffile then guesses, e.g. planar RGB for any 3 or 4 slices).

    Raises:
        DataError: the file cannot be decoded (the message names it and the reason).
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                arr, axes = _memory_map(path, series) if _mappable(series) else series.asarray(), series.axes
                if tif.is_shaped and "axes" not in (tif.shaped_metadata or ({},))[0]:
                    axes = None  # tifffile's own file without axes: its letters are guesses (3 or 4 slices -> "RGB")
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode == "P":
                    arr = np.asarray(im)  # palette masks keep their indices
                else:
                    arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "I;16", "I", "F", "RGB") else im)
            axes = "YX" if arr.ndim == 2 else "YXS"
    except Exception as exc:  # PIL and tifffile raise many types for corrupt files
        raise DataError(f"cannot read image {str(path)!r}: {exc.__class__.__name__}: {exc}") from exc
    arr = np.asarray(arr)
    return arr, (axes if axes and len(axes) == arr.ndim else None)


def _mappable(series) -> bool:
    """True for a large TIFF series stored uncompressed in one contiguous block (see MEMMAP_PIXELS)."""
    pixels = int(np.prod(series.shape)) // max(1, series.shape[-1] if series.axes.endswith("S") else 1)
    return pixels > MEMMAP_PIXELS and series.dataoffset is not None


def _memory_map(path: Path, series) -> np.ndarray:
    """The series as a read-only memory map of the file (its pixels are read where they are used)."""
    import tifffile

    try:
        return tifffile.memmap(path, series=0, mode="r")
    except ValueError:  # not mappable after all (e.g. byte order or layout): decode it
        return series.asarray()


def read_slices(path: str | Path, *, stack_axis: int | None = None, channel_axis: int | None = None
                ) -> tuple[np.ndarray, bool]:
    """One file as ``Z x H x W x C`` following the stack/channel rule of :mod:`.stacks`.

    Returns:
        (array, is_stack): is_stack is True when the file has a slice axis (even of one slice).

    Raises:
        DataError: unreadable file, or axes the rule cannot assign (the message says which option helps).
    """
    path = Path(path)
    arr, axes = read_array(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        stack_axis = channel_axis = None  # PNG / JPEG: H x W or H x W x colour, nothing to choose
    lay = layout(arr.shape, axes, stack_axis=stack_axis, channel_axis=channel_axis, source=f"image {path.name!r}")
    return lay.split(arr), lay.stack is not None


def read_image(path: str | Path) -> np.ndarray:
    """Read one 2D image as ``H x W`` or ``H x W x C``; a clear error for unreadable files and for stacks."""
    data, is_stack = read_slices(path)
    if is_stack:
        raise DataError(f"image {str(path)!r} is a stack of {len(data)} slices (shape {data.shape[:3]}); "
                        "a single 2D image is needed here.")
    img = data[0]
    return img[..., 0] if img.shape[2] == 1 else img


def slice_name(file_name: str, z: int, count: int) -> str:
    """Name of slice ``z`` of a stack file: ``cells.tif`` -> ``cells_z007.tif`` (at least 3 digits)."""
    p = Path(file_name)
    return f"{p.stem}_z{z:0{max(3, len(str(count - 1)))}d}{p.suffix}"


def read_image_folder(folder: str | Path, *, stack_axis: int | None = None,
                      channel_axis: int | None = None) -> ImageStack:
    """All images of a folder as an :class:`ImageStack`: 2D files named by file name, the slices of a
    stack file by :func:`slice_name`; ``sources`` records (file, slice) of every image.

    Args:
        folder: Folder of TIFF / PNG / JPEG files.
        stack_axis, channel_axis: Axes of every TIFF of more than two axes (see :mod:`.stacks`);
            None = from the file's axes metadata or the rule for files without it.
    """
    images, names, sources = [], [], []
    for p in list_images(folder):
        data, is_stack = read_slices(p, stack_axis=stack_axis, channel_axis=channel_axis)
        for z, img in enumerate(data):
            images.append(img)
            names.append(slice_name(p.name, z, len(data)) if is_stack else p.name)
            sources.append((p.name, z if is_stack else None))
    _check_unique(names, sources)
    return ImageStack(images, names, sources)


def _check_unique(names: list[str], sources: list[tuple[str, int | None]]) -> None:
    seen: dict[str, str] = {}
    for name, (file, z) in zip(names, sources):
        if name in seen:
            raise DataError(f"image name {name!r} is taken twice: by the file {seen[name]!r} and by "
                            f"{'slice ' + str(z) + ' of ' if z is not None else ''}{file!r}; rename one of the files.")
        seen[name] = file


def read_masks(folder: str | Path, image_names: Sequence[str],
               sources: Sequence[tuple[str, int | None]] | None = None) -> list[np.ndarray]:
    """Masks matched to images by file stem (``a.png`` for image ``a.jpg``); int64 ``H x W`` arrays.

    A slice of a stack (``sources[i] = (file, z)``) takes a 2D mask named like the slice (``cells_z003.png``)
    or slice ``z`` of a mask stack named like the file (``cells.tif``, with as many slices).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"mask folder {str(folder)!r} does not exist.")
    by_stem = {p.stem: p for p in list_images(folder)}
    sources = list(sources) if sources else [(name, None) for name in image_names]
    counts = Counter(file for file, z in sources if z is not None)
    stacks: dict[Path, np.ndarray] = {}
    masks = []
    for name, (file, z) in zip(image_names, sources):
        stem = Path(name).stem
        path = by_stem.get(stem)
        if path is None and z is not None:
            path = by_stem.get(Path(file).stem)
        if path is None:
            also = f" or a stack {Path(file).stem}.tif" if z is not None else ""
            raise DataError(f"no mask for image {name!r} in {str(folder)!r} (looked for {stem}.png/.tif{also}).")
        if path not in stacks:
            stacks[path] = read_slices(path)[0]
        data = stacks[path]
        if data.shape[3] != 1:
            raise DataError(f"mask {str(path)!r} has several channels; masks must be single-channel label images.")
        if path.stem == stem:
            if len(data) != 1:
                raise DataError(f"mask {str(path)!r} is a stack of {len(data)} slices, but image {name!r} is one "
                                "2D image.")
            masks.append(data[0, ..., 0].astype(np.int64))
            continue
        if len(data) != counts[file]:
            raise DataError(f"mask stack {str(path)!r} has {len(data)} slices, image {file!r} has {counts[file]}; "
                            "give the mask as many slices as the image.")
        masks.append(data[z, ..., 0].astype(np.int64))
    return masks
