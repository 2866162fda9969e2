"""``napari-pcam benchmark random-walk``: the stencil random walk vs. IRNet's dense formulation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_benchmark_parser(benchmark_subparsers: argparse._SubParsersAction) -> None:
    """Register ``random-walk`` under ``napari-pcam benchmark``."""
    p = benchmark_subparsers.add_parser(
        "random-walk",
        help="time, peak memory and output difference of the random walk vs. IRNet's dense N x N version",
        description="Runs napari-pcam's stencil random walk and IRNet's dense formulation (each in a fresh "
        "subprocess, on the CPU) on a synthetic stride-4 problem and prints JSON with speedup, "
        "max_abs_diff, peak_mb_ours, peak_mb_dense and more. The dense run takes minutes at VOC size.",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--height", type=int, default=94, help="grid height at stride 4 (default 94)")
    p.add_argument("--width", type=int, default=125, help="grid width at stride 4 (default 125)")
    p.add_argument("--classes", type=int, default=21, help="classes including background (default 21)")
    p.add_argument("--beta", type=float, default=12.0, help="affinity exponent (default 12)")
    p.add_argument("--exp-times", type=int, default=8, help="log2 of the number of steps (default 8)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic input")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print (and optionally save) its JSON."""
    from ..benchmarks.random_walk import benchmark_random_walk
    from ..core.errors import ConfigError
    from ..core.io import atomic_write_text

    if min(args.height, args.width) < 1 or args.classes < 2:
        raise ConfigError("--height and --width must be positive and --classes at least 2.")
    result = benchmark_random_walk(
        height=args.height, width=args.width, classes=args.classes, beta=args.beta,
        exp_times=args.exp_times, seed=args.seed, threads=args.threads,
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        atomic_write_text(args.json, text + "\n")
    return 0
