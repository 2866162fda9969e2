"""``napari-pcam segment``: apply a trained model bundle to new images."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.bundle import load_bundle
from ..core.data.readers import read_image_folder
from ..core.device import resolve_device
from ..core.errors import DataError
from ..core.io import check_writable_folder, write_tiff
from ..core.progress import Progress
from .common import add_stack_options, drain_with_tqdm, stack_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment new images with a trained model bundle",
                       description="Apply the DeepLabv3+ of a model bundle (the 'model' folder of a run) to a "
                       "folder of images; writes one uint8 label TIFF per image file (0 = background): a stack's "
                       "labels as one Z x H x W stack (axes ZYX), slices split as in 'run' "
                       "(README 'Stacks and channels').")
    p.add_argument("--model", type=Path, required=True, help="model bundle folder (<run>/model)")
    p.add_argument("--images", type=Path, required=True, help="folder of images to segment")
    p.add_argument("--out", type=Path, required=True, help="output folder for <image>.tif label images")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--force", action="store_true", help="overwrite existing label files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_stack_options(p)
    p.set_defaults(func=main)


def _targets(images, out: Path) -> list[tuple[Path, list[int], bool]]:
    """(label file, indices of its images, is a stack) per input file: ``<out>/<file stem>.tif``."""
    sources = images.sources or [(name, None) for name in images.names]
    groups: dict[str, tuple[list[int], bool]] = {}
    for i, (file, z) in enumerate(sources):
        groups.setdefault(file, ([], z is not None))[0].append(i)
    return [(out / f"{Path(file).stem}.tif", idx, is_stack) for file, (idx, is_stack) in groups.items()]


def _segment(bundle, images, out: Path, device: str, force: bool):
    targets = _targets(images, out)
    existing = [t.name for t, _, _ in targets if t.exists()]
    if existing and not force:
        raise DataError(f"{len(existing)} label files already exist in {str(out)!r} (e.g. {existing[0]}); "
                        "pass --force to overwrite them or choose another --out.")
    if images.channels != bundle.in_channels:
        raise DataError(f"the model expects {bundle.in_channels}-channel images, the images in the folder have "
                        f"{images.channels}; convert them or use a model trained on such images.")
    done = 0
    for target, indices, is_stack in targets:
        labels = []
        for i in indices:
            labels.append(bundle.predict(images.images[i], device=device))
            done += 1
            yield Progress("segment", done, len(images), message=images.names[i])
        if is_stack:
            write_tiff(target, np.stack(labels), axes="ZYX")
        else:
            write_tiff(target, labels[0])
    return len(targets)


def main(args: argparse.Namespace) -> int:
    check_writable_folder(args.out)  # before anything is loaded; creates nothing
    device = str(resolve_device(args.device))
    bundle = load_bundle(args.model, device=device)
    images = read_image_folder(args.images, **stack_options(args))
    files = drain_with_tqdm(_segment(bundle, images, args.out, device, args.force), quiet=args.quiet)
    print(f"label images of {len(images)} images ({files} files) written to {args.out}")
    return 0
