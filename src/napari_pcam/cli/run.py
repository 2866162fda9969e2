"""``napari-pcam run``: the chain on a folder of images + points CSV, or on the built-in sample."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..core.data.points import read_points_csv
from ..core.data.readers import read_image_folder, read_masks
from ..core.errors import DataError
from ..core.io import check_writable_folder
from ..core.pipeline import STAGES, RunData, run_pipeline
from .common import (
    add_config_options,
    add_sample_variant_option,
    add_stack_options,
    distributed_session,
    drain_with_tqdm,
    require,
    resolve_config,
    stack_options,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="train the chain on images + points and write labels, maps, models and metrics",
        description="Train the chain (PCAM -> CAMs -> ...) on a folder of images and a points CSV "
        "(image,y,x,class or napari's Points CSV) and write PCAM maps (float32 TIFF), label images, "
        "checkpoints, config.toml, run.json and, with masks, metrics.json. Reruns resume finished stages.",
    )
    p.add_argument("--images", type=Path, help="folder of training images (TIFF, PNG, JPEG)")
    p.add_argument("--points", type=Path, help="points CSV: image,y,x,class or image,z,y,x,class for slices of "
                                               "stacks (class 0 = background)")
    p.add_argument("--masks", type=Path, help="folder of ground-truth label images for evaluation")
    p.add_argument("--val-images", type=Path, help="held-out images (evaluation only)")
    p.add_argument("--val-masks", type=Path, help="masks of the held-out images")
    p.add_argument("--classes", help="comma-separated class names, background first (default: from the CSV)")
    p.add_argument("--sample", action="store_true", help="use the built-in synthetic sample and its light preset")
    add_sample_variant_option(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--until", choices=STAGES, default=STAGES[-1], help="last stage to run")
    p.add_argument("--force", action="store_true", help="recompute stale stages / write into a foreign folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_options(p)
    add_stack_options(p)
    p.set_defaults(func=main, torchrun=True)


def load_run_data(args: argparse.Namespace) -> RunData:
    """The images, points and masks named on the command line (or the sample)."""
    if getattr(args, "sample_variant", "default") != "default" and not args.sample:
        raise DataError("--sample-variant needs --sample.")
    if args.sample:
        from ..core.data.synthetic import load_sample

        variant = getattr(args, "sample_variant", "default")
        train, val = load_sample("train", variant), load_sample("val", variant)
        return RunData(train.images, train.points, train.masks, val.images, val.masks)
    axes = stack_options(args)
    images = read_image_folder(require(args.images, "a folder of images", "--images"), **axes)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    points = read_points_csv(require(args.points, "a points CSV", "--points"), images.names, classes,
                             sources=images.sources)
    masks = read_masks(args.masks, images.names, images.sources) if args.masks else None
    val_images = read_image_folder(args.val_images, **axes) if args.val_images else None
    val_masks = (read_masks(args.val_masks, val_images.names, val_images.sources)
                 if args.val_masks and val_images else None)
    if args.val_masks and val_images is None:
        raise DataError("--val-masks needs --val-images.")
    return RunData(images, points, masks, val_images, val_masks)


def main(args: argparse.Namespace) -> int:
    config = resolve_config(args, default_preset="sample" if args.sample else "paper")
    check_writable_folder(args.out)  # before reading or training anything; creates nothing
    data = load_run_data(args)
    start = time.perf_counter()
    with distributed_session(config.runtime.device) as main_rank:  # several processes under torchrun
        result = drain_with_tqdm(run_pipeline(data, config, args.out, until=args.until, force=args.force),
                                 quiet=args.quiet)
    total = time.perf_counter() - start
    if main_rank:
        print_summary(result.metrics, total, args.out)
    return 0


def print_summary(metrics: dict, total: float, out: Path) -> None:
    """A small table: stage, seconds, train/val mIoU, class-balanced accuracy at the clicks."""
    seconds = metrics.get("seconds", {})
    train, val = metrics.get("train", {}), metrics.get("val", {})
    clicks = {s: c["balanced"] for s, c in metrics.get("clicks", {}).items()}
    rows = sorted(set(seconds) | set(train) | set(val), key=lambda s: list(seconds).index(s) if s in seconds else 99)
    print(f"\n{'stage':<11} {'seconds':>9} {'train mIoU':>11} {'val mIoU':>9} {'clicks %':>9}")
    for s in rows:
        cells = [f"{d[s]:.1f}" if d.get(s) is not None else "-" for d in (seconds, train, val, clicks)]
        print(f"{s:<11} {cells[0]:>9} {cells[1]:>11} {cells[2]:>9} {cells[3]:>9}")
    for line in calibration_lines(metrics.get("calibration")):
        print(line)
    print(f"total {total:.1f} s; results in {out}")


def calibration_lines(record: dict | None) -> list[str]:
    """The thresholds chosen at the held-out clicks, each with its held-out click score and the configured
    value's (accuracy for the background thresholds, precision of the mined labels for IRNet's)."""
    if not record:
        return []

    def pct(v):
        return "-" if v is None else f"{v:.1f}"

    crf = record.get("deeplab.crf")  # deeplab.crf_check, scored at the training clicks (also without calibration)
    crf_line = [] if crf is None else [
        f"final dense CRF (deeplab.crf_check): {'on' if crf['value'] else 'off'}; training click score "
        f"{pct(crf['crf_score'])} with it, {pct(crf['plain_score'])} without", *(f"  {m}" for m in crf["problems"])]
    if "fallback" in record:
        return [f"calibration: {record['fallback']}", *crf_line]
    if "held_out_clicks" not in record:
        return crf_line
    lines = [f"thresholds chosen at {record['held_out_clicks']} held-out clicks "
             f"(configured value in brackets; held-out click score, %):"]
    for name, c in record.items():
        if name == "deeplab.crf":
            continue
        if isinstance(c, dict) and isinstance(c["value"], str):  # deeplab.train_on: the better stage's labels
            lines.append(f"  {name:<27} {c['value']} ({c['configured']})   "
                         f"pcam {pct(c['pcam_score'])}, refined {pct(c['refined_score'])}")
        elif isinstance(c, dict):
            cover = f", covers {c['coverage']:.0f}% of its clicks" if c.get("coverage") is not None else ""
            lines.append(f"  {name:<27} {c['value']:.2f} ({c['configured']:.2f})   "
                         f"{pct(c['score'])} ({pct(c['configured_score'])}){cover}")
    return lines + crf_line
