"""``napari-pcam benchmark ...``: performance and quality measurements (never timed unit tests)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import benchmark_random_walk, benchmark_voc
from .common import add_config_options, add_sample_variant_option, drain_with_tqdm, resolve_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="measure speed and quality (throughput, random-walk, ...)",
                       description="Benchmarks that print tables/JSON; see each one's --help.")
    bsub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    bsub.required = True
    t = bsub.add_parser("throughput", help="PCAM training images/s vs a bare torchvision/timm forward+backward",
                        description="Images/s of PCAM training and of the encoder's bare torchvision or timm "
                        "model forward+backward with the same input size and batch, on the CPU, and their ratio.")
    t.add_argument("--backbones", default="resnet18,resnet50,efficientnet_lite0",
                   help="comma-separated encoders (see --backbone of run)")
    t.add_argument("--size", type=int, default=256, help="input side in pixels (multiple of 16)")
    t.add_argument("--batch", type=int, default=8, help="images per step")
    t.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    t.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    t.set_defaults(func=_throughput)
    benchmark_random_walk.add_benchmark_parser(bsub)
    benchmark_voc.add_voc_parser(bsub)
    c = bsub.add_parser("chain", help="the chain next to CAM, point-only, random-forest and fully supervised baselines",
                        description="Runs the PCAM chain and its baselines on the same images and points (each row "
                        "in a fresh subprocess) and prints one Markdown table: train/val mIoU, seconds, peak memory.")
    c.add_argument("--sample", action="store_true", help="the built-in sample with its light preset")
    add_sample_variant_option(c)
    c.add_argument("--images", type=Path, help="folder of training images")
    c.add_argument("--points", type=Path, help="points CSV")
    c.add_argument("--masks", type=Path, help="masks of the training images (required)")
    c.add_argument("--val-images", type=Path, help="held-out images")
    c.add_argument("--val-masks", type=Path, help="masks of the held-out images")
    c.add_argument("--classes", help="comma-separated class names, background first")
    c.add_argument("--work", type=Path, help="folder for the runs (default: a temporary folder)")
    c.add_argument("--json", type=Path, help="also write the rows as JSON")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--rows", help="comma-separated rows to run (default: pcam chain, cam chain, point-only "
                   "deeplab, random forest, fully supervised deeplab); also: random forest crf (the forest's "
                   "probabilities through the dense CRF; needs the crf extra)")
    c.add_argument("--no-held-out-stages", action="store_true",
                   help="score only the final labels of the held-out images (skips their CAMs and random walks)")
    add_config_options(c)
    c.set_defaults(func=_chain)


def _throughput(args: argparse.Namespace) -> int:
    from ..benchmarks.throughput import benchmark_throughput
    from ..core.io import atomic_write_text

    rows = benchmark_throughput(tuple(b.strip() for b in args.backbones.split(",")), size=args.size,
                                batch=args.batch, steps=args.steps)
    print("| backbone | input | batch | PCAM img/s | bare img/s | overhead |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['input']} | {r['batch']} | {r['pcam_images_per_s']:.2f} | "
              f"{r['bare_images_per_s']:.2f} | {r['overhead_ratio']:.2f}x |")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


def _chain(args: argparse.Namespace) -> int:
    import tempfile

    from ..benchmarks.chain import DEFAULT_ROWS, benchmark_chain, markdown, recovered_fraction
    from ..core.io import atomic_write_text
    from .run import load_run_data

    config = resolve_config(args, default_preset="sample" if args.sample else "paper")
    data = load_run_data(args)
    with tempfile.TemporaryDirectory(prefix="pcam-bench-") as tmp:
        wanted = DEFAULT_ROWS if not args.rows else tuple(r.strip() for r in args.rows.split(",") if r.strip())
        rows = drain_with_tqdm(benchmark_chain(data, config, args.work or tmp, rows=wanted,
                                               held_out_stages=not args.no_held_out_stages), quiet=args.quiet)
    print(markdown(rows))
    if args.json:
        frac = recovered_fraction(rows)
        for row in rows:  # one object per row; the chain's row also carries final / fully supervised
            if row["name"] == "pcam chain":
                row["final_over_fully_supervised"] = frac
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0
