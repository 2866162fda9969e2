"""Applying a model to many images: a folder of files (or named arrays) -> one label TIFF each.

The runner is model-agnostic: the caller passes ``predict`` (one ``H x W x C`` image -> uint8 ``H x W``
labels). Every output path is planned and checked before any work starts: existing results are only
replaced with ``overwrite``, and an output that would land on an input file is refused always. Files are
written atomically (:func:`~napari_pcam.core.io.write_tiff`), so an interrupted run leaves whole files.
Files that cannot be read, or whose images the model cannot take, are skipped and listed; nothing else is
touched.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.readers import list_images, read_slices
from .errors import DataError, PcamError
from .io import make_folder, write_tiff
from .progress import Progress

LABELS_SUFFIX = "_labels.tif"
DEFAULT_OUT = "pcam_labels"  # the output folder inside the input folder, unless another is chosen


@dataclass
class BatchReport:
    """What a batch run did: label files written, inputs skipped with the reason."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people, naming every skipped input."""
        text = f"{len(self.written)} label file(s) written"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped: " + "; ".join(f"{name} ({why})" for name, why in self.skipped)
        return text


def label_path(out: str | Path, name: str) -> Path:
    """``<out>/<stem of name>_labels.tif`` (a layer name or file name; unsafe characters become '_')."""
    stem = Path(name).stem if Path(name).suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg") else name
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).strip(".") or "image"
    return Path(out) / f"{safe}{LABELS_SUFFIX}"


def check_targets(targets: Sequence[Path], *, inputs: Sequence[Path] = (), overwrite: bool = False) -> None:
    """Refuse targets that would replace an input file, or existing results unless ``overwrite``.

    Raises:
        DataError: naming the files and what to do (tick 'overwrite', or choose another output folder).
    """
    resolved = {Path(p).resolve() for p in inputs}
    clash = [t for t in targets if Path(t).resolve() in resolved]
    if clash:
        raise DataError(f"the label file {str(clash[0])!r} would replace an input image; choose another output "
                        "folder.")
    seen: set[Path] = set()
    for t in targets:
        if t in seen:
            raise DataError(f"two images would write the same label file {str(t)!r}; rename one of them.")
        seen.add(t)
    existing = [t for t in targets if Path(t).exists()]
    if existing and not overwrite:
        raise DataError(
            f"{len(existing)} label file(s) already exist in {str(Path(existing[0]).parent)!r} (e.g. "
            f"{Path(existing[0]).name}); tick 'overwrite' to replace them or choose another output folder."
        )


def plan_folder(folder: str | Path, out: str | Path | None = None, *, overwrite: bool = False
                ) -> tuple[list[Path], list[Path]]:
    """(image files, their label files) of a folder run, checked by :func:`check_targets`; writes nothing.

    Raises:
        DataError: no such folder, no images in it, or label files that may not be written.
    """
    files = list_images(folder)
    out = Path(folder) / DEFAULT_OUT if out is None else Path(out)
    targets = [label_path(out, f.name) for f in files]
    check_targets(targets, inputs=files, overwrite=overwrite)
    return files, targets


def segment_folder(
    folder: str | Path,
    predict: Callable[[np.ndarray], np.ndarray],
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    stack_axis: int | None = None,
    channel_axis: int | None = None,
) -> Generator[Progress, None, BatchReport]:
    """Segment every image file of ``folder`` into ``<out>/<stem>_labels.tif`` (stacks as Z x H x W).

    Args:
        folder: Folder of TIFF / PNG / JPEG files (sub-folders are not read).
        predict: One ``H x W x C`` image -> uint8 ``H x W`` labels; a :class:`PcamError` it raises (e.g.
            another channel count than the model's) skips that file.
        out: Output folder (created); None = ``<folder>/pcam_labels``.
        overwrite: Replace label files that already exist (else they are refused before any work).
        stack_axis, channel_axis: As for ``napari-pcam run`` (see :mod:`.data.stacks`).

    Yields:
        Progress("segment", files done, files, message=file name, preview=(label path, labels) or None).
    """
    files, targets = plan_folder(folder, out, overwrite=overwrite)
    make_folder(targets[0].parent)  # checked first: a folder that cannot be written is named with the reason
    report = BatchReport()
    for i, (file, target) in enumerate(zip(files, targets), start=1):
        preview = None
        try:
            data, is_stack = read_slices(file, stack_axis=stack_axis, channel_axis=channel_axis)
            labels = np.stack([predict(img) for img in data])
            write_tiff(target, labels if is_stack else labels[0], axes="ZYX" if is_stack else None)
            report.written.append(target)
            preview = (target, labels if is_stack else labels[0])
        except PcamError as exc:
            report.skipped.append((file.name, str(exc)))
        yield Progress("segment", i, len(files), message=file.name, preview=preview)
    return report
