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

from .errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Raises:
        OutputError: the folder of ``path`` cannot be made or written into.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a read-only folder, a file in the way, ...: one line naming the path, not a traceback
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}.") from exc
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


def check_writable_folder(path: str | Path, what: str = "output folder") -> None:
    """Make sure files can be written into the folder ``path`` (existing, or to be created); creates nothing.

    It really tries: a probe file is created and removed in ``path`` (or, when ``path`` does not exist yet,
    in its nearest existing parent, where the missing folders would be made). Permission bits alone do not
    tell (root writes into read-only folders; read-only file systems and /proc refuse everyone).

    Raises:
        OutputError: naming the path that cannot be written and why (a file in the way, no permission, ...).
    """
    path = Path(path)
    probe = _existing_parent(path, what)
    if not probe.is_dir():
        kind = "is not a folder" if probe == path else f"lies under {str(probe)!r}, which is a file, not a folder"
        raise OutputError(f"cannot write the {what} {str(path)!r}: it {kind}.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".napari-pcam-write-test-", dir=probe)
    except OSError as exc:
        inside = "" if probe == path else f" (it does not exist yet; its parent {str(probe)!r} is not writable)"
        raise OutputError(f"cannot write into the {what} {str(path)!r}{inside}: {exc.strerror or exc}.") from exc
    os.close(fd)
    os.unlink(tmp)


def _existing_parent(path: Path, what: str) -> Path:
    """``path`` itself or its nearest ancestor that exists."""
    probe = path
    try:
        while not probe.exists():
            if probe.is_symlink():
                raise OutputError(f"cannot create the {what} {str(path)!r}: {str(probe)!r} is a broken symbolic link.")
            if probe.parent == probe:
                break
            probe = probe.parent
    except OSError as exc:  # e.g. a name too long for the file system
        raise OutputError(f"cannot use the {what} {str(path)!r}: {exc.strerror or exc}.") from exc
    return probe


def make_folder(path: str | Path, what: str = "output folder") -> None:
    """Create the folder ``path`` (and its parents), or raise :class:`OutputError` saying why it cannot be.

    Checked first with :func:`check_writable_folder`; should creating a deeper folder still fail, the
    folders made on the way are removed again.
    """
    path = Path(path)
    check_writable_folder(path, what)
    made = []
    try:
        for folder in reversed([path, *path.parents]):
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
    except OSError as exc:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise OutputError(f"cannot create the {what} {str(path)!r}: {exc.strerror or exc}.") from exc
