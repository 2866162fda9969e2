"""``napari-pcam benchmark voc``: the paper's tables on PASCAL VOC 2012 (see :mod:`..benchmarks.voc`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .common import distributed_session, drain_with_tqdm


def add_voc_parser(bsub: argparse._SubParsersAction) -> None:
    """Register ``benchmark voc`` on the benchmark subparsers."""
    v = bsub.add_parser(
        "voc", help="the paper's Tables 1-4 on PASCAL VOC 2012 (train_aug / val), ours next to the paper's",
        description="Runs CAM, PCAM, PCAM-F, their IRNet refinement, DeepLabv3+ on refined PCAMs and a fully "
        "supervised DeepLabv3+ on train_aug, evaluates on train_aug and val, and writes report.md and report.json "
        "into --out (each cell: ours (paper)). Every experiment has its own sub-folder of --out and resumes from "
        "its cached stages.")
    v.add_argument("--voc-root", type=Path, required=True, help="folder holding VOCdevkit (or VOC2012 itself)")
    v.add_argument("--sbd-root", type=Path, help="SBD: folder holding benchmark_RELEASE or SegmentationClassAug "
                   "(default: looked for beside VOCdevkit)")
    v.add_argument("--points", type=Path, required=True, help="pascal2012_trainval_main.json (Bearman et al.)")
    v.add_argument("--supp-points", type=Path, help="pascal2012_trainval_supp.json: adds a 3-annotator PCAM row")
    v.add_argument("--out", type=Path, required=True, help="output folder (report.md, report.json, one sub-folder "
                   "per experiment)")
    v.add_argument("--max-images", type=int, help="only the first N images of train_aug and of val")
    v.add_argument("--only", help="comma-separated parts: table1,table2,table3 (table3 includes table 4)")
    v.add_argument("--preset", choices=["paper", "smoke"], default="paper",
                   help="paper: the paper's settings; smoke: tiny CPU run that checks the machinery")
    v.add_argument("--config", type=Path, help="TOML or JSON settings file used instead of --preset (e.g. a run's "
                   "config.toml with more epochs)")
    v.add_argument("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    v.add_argument("--weights", help="'imagenet', 'none' or a torchvision ResNet .pth file (PCAM and DeepLabv3+; "
                   "IRNet reuses the PCAM backbone)")
    v.add_argument("--seed", type=int, help="random seed")
    v.add_argument("--force", action="store_true", help="recompute cached stages made with other data or settings")
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.set_defaults(func=_voc, torchrun=True)


def _voc(args: argparse.Namespace) -> int:
    from ..benchmarks.voc import benchmark_voc
    from ..core.config import load_config
    from ..core.presets import get_preset

    cfg = load_config(args.config) if args.config is not None else get_preset(args.preset)
    if args.weights:
        cfg = dataclasses.replace(cfg, cam=dataclasses.replace(cfg.cam, weights=args.weights),
                                  deeplab=dataclasses.replace(cfg.deeplab, weights=args.weights))
    if args.device or args.seed is not None:
        rt = cfg.runtime
        rt = dataclasses.replace(rt, device=args.device or rt.device, seed=rt.seed if args.seed is None else args.seed)
        cfg = dataclasses.replace(cfg, runtime=rt)
    with distributed_session(cfg.runtime.device) as main_rank:  # several processes under torchrun
        report = drain_with_tqdm(benchmark_voc(
            args.voc_root, args.points, args.out, cfg, sbd_root=args.sbd_root, supp_json=args.supp_points,
            max_images=args.max_images, only=args.only, force=args.force,
            preset=args.preset if args.config is None else f"config file {args.config}"), quiet=args.quiet)
    if main_rank:
        print(f"wrote {args.out / 'report.md'} and {args.out / 'report.json'} ({len(report['rows'])} rows)")
    return 0
