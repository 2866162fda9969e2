"""``napari-pcam segment``: apply a trained model bundle to new images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.bundle import load_bundle
from ..core.data.readers import read_image_folder
from ..core.device import resolve_device
from ..core.errors import DataError
from ..core.io import write_tiff
from ..core.progress import Progress
from .common import drain_with_tqdm


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment new images with a trained model bundle",
                       description="Apply the DeepLabv3+ of a model bundle (the 'model' folder of a run) to a folder "
                       "of images; writes one uint8 label TIFF per image (0 = background).")
    p.add_argument("--model", type=Path, required=True, help="model bundle folder (<run>/model)")
    p.add_argument("--images", type=Path, required=True, help="folder of images to segment")
    p.add_argument("--out", type=Path, required=True, help="output folder for <image>.tif label images")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--force", action="store_true", help="overwrite existing label files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def _segment(bundle, images, out: Path, device: str, force: bool):
    targets = [out / f"{Path(n).stem}.tif" for n in images.names]
    existing = [t.name for t in targets if t.exists()]
    if existing and not force:
        raise DataError(f"{len(existing)} label files already exist in {str(out)!r} (e.g. {existing[0]}); "
                        "pass --force to overwrite them or choose another --out.")
    if images.channels != bundle.in_channels:
        raise DataError(f"the model expects {bundle.in_channels}-channel images, the images in the folder have "
                        f"{images.channels}; convert them or use a model trained on such images.")
    for i, (img, target) in enumerate(zip(images.images, targets)):
        write_tiff(target, bundle.predict(img, device=device))
        yield Progress("segment", i + 1, len(targets), message=images.names[i])


def main(args: argparse.Namespace) -> int:
    device = str(resolve_device(args.device))
    bundle = load_bundle(args.model, device=device)
    images = read_image_folder(args.images)
    drain_with_tqdm(_segment(bundle, images, args.out, device, args.force), quiet=args.quiet)
    print(f"{len(images)} label images written to {args.out}")
    return 0
