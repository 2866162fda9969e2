"""``napari-pcam refine``: IRNet refinement (Ahn et al., CVPR 2019) of PCAMs computed by ``napari-pcam run``.

Reads the CAMs (``<image stem>.npz`` in ``--cams``, default ``<out>/cams``), trains IRNet on them (or loads
``--irn``), runs the random walk and writes ``<out>/refined/<stem>.tif`` (uint8 class ids), with
``--instances`` also ``<out>/instances/<stem>.tif`` (one id per instance); with masks it prints and writes
the mIoU of the PCAM labels and of the refined labels (``<out>/refine_metrics.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..core.config import PipelineConfig
from ..core.data.cams import CamMaps
from ..core.data.readers import read_image_folder, read_masks
from ..core.errors import DataError, MissingStageError
from ..core.io import atomic_write_text, check_writable_folder, write_tiff
from ..core.metrics import evaluate
from .common import add_config_options, add_stack_options, drain_with_tqdm, resolve_config, stack_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``refine``."""
    p = sub.add_parser(
        "refine",
        help="refine PCAMs with IRNet + random walk and write refined label images",
        description="Train IRNet on the confident regions of the CAMs written by 'napari-pcam run --until cams' "
        "and propagate the CAMs with a random walk; writes refined label TIFFs (and, with masks, their mIoU).",
    )
    p.add_argument("--images", type=Path, help="folder of the images the CAMs belong to")
    p.add_argument("--cams", type=Path, help="folder of <image stem>.npz CAM files (default: <out>/cams)")
    p.add_argument("--masks", type=Path, help="folder of ground-truth label images for evaluation")
    p.add_argument("--class-names", help="comma-separated class names, background first (for the metrics)")
    p.add_argument("--sample", action="store_true", help="use the built-in sample's training images and masks")
    p.add_argument("--out", type=Path, required=True, help="output folder (the one of 'napari-pcam run')")
    p.add_argument("--irn", type=Path, help="trained IRNet checkpoint to use instead of training one")
    p.add_argument("--pcam", type=Path,
                   help="PCAM checkpoint whose backbone IRNet reuses (default: <out>/models/pcam.pt)")
    p.add_argument("--irn-steps", type=int, help="minimum number of IRNet training steps")
    p.add_argument("--beta", type=float, help="exponent of the affinities (paper: 12)")
    p.add_argument("--instances", action="store_true", help="also write instance label images")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_options(p)
    add_stack_options(p)
    p.set_defaults(func=main)


def _load_inputs(args: argparse.Namespace):
    """Images, masks (or None), class names and the CAMs named on the command line."""
    if args.sample:
        from ..core.data.synthetic import load_sample

        data = load_sample("train")
        images, masks, names = data.images, data.masks, data.class_names
    else:
        if args.images is None:
            raise DataError("a folder of images is needed: pass --images (or --sample).")
        images = read_image_folder(args.images, **stack_options(args))
        masks = read_masks(args.masks, images.names, images.sources) if args.masks else None
        names = [c.strip() for c in args.class_names.split(",")] if args.class_names else None
    folder = args.cams or args.out / "cams"
    paths = [folder / f"{Path(n).stem}.npz" for n in images.names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        source = "--sample" if args.sample else f"--images {args.images} --points POINTS.csv"
        raise MissingStageError(
            f"no CAMs for {len(missing)} image(s) in {str(folder)!r} (e.g. {missing[0]}): compute them first with "
            f"'napari-pcam run {source} --out {args.out} --until cams'."
        )
    return images, masks, names, [CamMaps.load(p) for p in paths]


def _trained_irn(args: argparse.Namespace, cfg: PipelineConfig, images, cams):
    """Load ``--irn`` or train IRNet (reusing the PCAM backbone when irn.weights is 'same')."""
    from ..core.stages.cam import TrainedCam
    from ..core.stages.irn import load_irn, train_irn

    if args.irn is not None:
        return load_irn(args.irn)
    irn = cfg.irn
    if args.irn_steps is not None:
        irn = dataclasses.replace(irn, min_steps=args.irn_steps)
    state = None
    if irn.weights == "same":
        pcam = args.pcam or args.out / "models" / "pcam.pt"
        if not pcam.is_file():
            raise MissingStageError(
                f"IRNet reuses the PCAM backbone, but {str(pcam)!r} does not exist: train the PCAM first "
                f"('napari-pcam run ... --out {args.out} --until cams'), pass --pcam, or a config with irn.weights."
            )
        trained_cam = TrainedCam.load(pcam)
        state = trained_cam.model.backbone.state_dict()
        irn = dataclasses.replace(irn, backbone=trained_cam.model.backbone.name)
    gen = train_irn(images, cams, irn, cfg.affinity, device=cfg.runtime.device, seed=cfg.runtime.seed,
                    init_backbone_state=state)
    trained = drain_with_tqdm(gen, quiet=args.quiet)
    trained.save(args.out / "models" / "irn.pt")
    return trained


def main(args: argparse.Namespace) -> int:
    """Run ``refine``; returns the exit code."""
    from ..core.stages.instances import refine_instances
    from ..core.stages.refine import refine_images

    cfg = resolve_config(args, default_preset="sample" if args.sample else "paper")
    check_writable_folder(args.out)  # before IRNet trains; creates nothing
    rw = cfg.random_walk if args.beta is None else dataclasses.replace(cfg.random_walk, beta=args.beta)
    images, masks, class_names, cams = _load_inputs(args)
    trained = _trained_irn(args, cfg, images, cams)
    device = cfg.runtime.device
    labels = drain_with_tqdm(refine_images(images, cams, trained, rw, device=device), quiet=args.quiet)
    for name, lab in zip(images.names, labels):
        write_tiff(args.out / "refined" / f"{Path(name).stem}.tif", lab)
    if args.instances:
        for name, img, cam in zip(images.names, images.images, cams):
            inst, _ = refine_instances(img, cam, trained.model, config=rw, device=device)
            dtype = "uint16" if inst.max() < 65536 else "int32"
            write_tiff(args.out / "instances" / f"{Path(name).stem}.tif", inst.astype(dtype))
    print(f"refined labels of {len(labels)} images in {args.out / 'refined'}")
    if masks is not None:
        n = 1 + max(int(max(m.max() for m in masks)), max((int(c.keys.max()) for c in cams if len(c.keys)), default=0))
        names = class_names or [f"class_{i}" for i in range(n)]
        pcam_labels = [c.labels(cfg.cam_inference.bg_threshold) for c in cams]
        scores = {"pcam": evaluate(masks, pcam_labels, names), "refined": evaluate(masks, labels, names)}
        atomic_write_text(args.out / "refine_metrics.json", json.dumps(scores, indent=2) + "\n")
        print(f"mIoU  PCAM {scores['pcam']['miou']:.1f}   refined {scores['refined']['miou']:.1f}")
    return 0
