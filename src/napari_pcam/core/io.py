"""Atomic file writing: results, points and models are never left half-written.

Every writer goes to a temporary file in the target folder and then ``os.replace``-s it over the
destination, so an interrupted run leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result over ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)


def place_file(source: str | Path, path: str | Path) -> bool:
    """Put the file ``source`` at ``path`` atomically: a hard link where the file system allows, else a copy.

    A link costs no disk space. It is safe for files that are only ever replaced (:func:`atomic_write`),
    never rewritten in place: replacing either name later leaves the other with the old contents.

    Returns:
        True if linked, False if copied.
    """
    linked = False

    def write(tmp: Path) -> None:
        nonlocal linked
        tmp.unlink()
        try:
            os.link(source, tmp)
            linked = True
        except OSError:  # another file system, or links not supported
            shutil.copyfile(source, tmp)

    atomic_write(path, write)
    return linked


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text atomically (UTF-8)."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_tiff(path: str | Path, array: np.ndarray, *, axes: str | None = None) -> None:
    """Write a TIFF atomically with tifffile (float32 maps, uint8/uint16 label images)."""
    import tifffile

    metadata = {"axes": axes} if axes else None
    atomic_write(path, lambda p: tifffile.imwrite(p, array, metadata=metadata, photometric="minisblack"))
