"""The ``napari-pcam`` command: one parser, one module per subcommand (explicit registry).

Each subcommand module defines ``add_parser(subparsers)`` which registers its parser and sets
``func`` (taking the parsed namespace, returning an exit code). Errors raised on purpose
(:class:`~napari_pcam.core.errors.PcamError`) are printed as one clear line, never a traceback.
Subcommands that can run as several processes under ``torchrun`` set ``torchrun=True``.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..core.errors import PcamError
from . import benchmark as _benchmark
from . import gui as _gui
from . import refine as _refine
from . import run as _run
from . import segment as _segment

COMMANDS = [_run, _segment, _refine, _benchmark, _gui]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="napari-pcam",
        description="Point-supervised semantic segmentation: PCAM -> IRNet -> DeepLabv3+.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"napari-pcam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not getattr(args, "torchrun", False):
        print(f"napari-pcam: error: '{args.command}' runs in one process; of the subcommands only 'run' and "
              "'benchmark voc' run under torchrun with several processes.", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PcamError as exc:
        print(f"napari-pcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-pcam: interrupted; finished files are kept, rerun to resume.", file=sys.stderr)
        return 130
