"""Pieces shared by the subcommands: config options, data loading, tqdm draining."""

from __future__ import annotations

import argparse
import contextlib
import warnings
from pathlib import Path
from typing import Generator, Iterator, TypeVar

from ..core.choices import apply_choices
from ..core.config import PipelineConfig, load_config
from ..core.errors import DataError
from ..core.models.encoders import ENCODER_NAMES, offline_encoders
from ..core.presets import PRESETS, get_preset
from ..core.progress import Progress

T = TypeVar("T")


def add_config_options(p: argparse.ArgumentParser) -> None:
    """--config, --preset and the common overrides."""
    g = p.add_argument_group("settings (defaults: the paper's; --sample uses the light 'sample' preset)")
    g.add_argument("--config", type=Path, help="TOML or JSON config file (written as config.toml by every run)")
    g.add_argument("--preset", choices=list(PRESETS), help="start from a named preset: paper (the paper's "
                   "settings, ResNet-50), sample (the built-in sample), cpu (user data on a CPU: pretrained "
                   "EfficientNet-Lite0, budgets in steps, thresholds from the clicks), smoke (a few steps)")
    g.add_argument("--backbone", choices=ENCODER_NAMES, metavar="ENCODER",
                   help=f"encoder of every network: {', '.join(ENCODER_NAMES)}")
    g.add_argument("--weights", help="'imagenet', 'none' or the path of a .pth state dict of the encoder "
                                     f"(ImageNet weights install offline for {', '.join(offline_encoders())})")
    g.add_argument("--alpha", type=float, help="weight of the point loss (0 = plain CAM)")
    g.add_argument("--cam-epochs", type=int, help="epochs of PCAM training")
    g.add_argument("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    g.add_argument("--seed", type=int, help="random seed")
    g.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="choose the CAM, mining and random-walk thresholds from held-out clicks (default: the "
                   "preset's; on in 'cpu'); --no-calibrate uses the configured thresholds")


def add_sample_variant_option(p: argparse.ArgumentParser) -> None:
    """--sample-variant: a harder variant of the built-in sample (see ``core.data.synthetic.SAMPLE_VARIANTS``)."""
    from ..core.data.synthetic import SAMPLE_VARIANTS

    p.add_argument("--sample-variant", choices=list(SAMPLE_VARIANTS), default="default",
                   help="with --sample: 'one-colour' (classes differ in texture and shape only), 'shapes-only' "
                        "(in shape only) or 'grayscale'")


def add_stack_options(p: argparse.ArgumentParser) -> None:
    """--stack-axis / --channel-axis: which axes of a multi-page or 3D TIFF are slices and which channels."""
    g = p.add_argument_group(
        "stacks and channels (default: the TIFF's axes metadata; without it a last axis of <= 4 is channels, "
        "else a leading third axis is slices; see README 'Stacks and channels')")
    g.add_argument("--stack-axis", type=int, metavar="N",
                   help="axis of the slices in every TIFF of more than two axes (as tifffile.imread reads it)")
    g.add_argument("--channel-axis", type=int, metavar="N",
                   help="axis of the channels in every TIFF of more than two axes")


def stack_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`~napari_pcam.core.data.readers.read_image_folder` from the options."""
    return {"stack_axis": getattr(args, "stack_axis", None), "channel_axis": getattr(args, "channel_axis", None)}


def resolve_config(args: argparse.Namespace, default_preset: str = "paper") -> PipelineConfig:
    """Preset or config file, then the command-line overrides."""
    if args.config is not None:
        cfg = load_config(args.config)
    else:
        cfg = get_preset(args.preset or default_preset)
    return apply_choices(cfg, encoder=args.backbone, weights=args.weights, alpha=args.alpha,
                         cam_epochs=args.cam_epochs, device=args.device, seed=args.seed,
                         calibrate=getattr(args, "calibrate", None))


@contextlib.contextmanager
def distributed_session(device: str) -> Iterator[bool]:
    """Join torchrun's process group for the command (nothing without torchrun); yields "this rank prints".

    On success every rank waits for the others before leaving the group; after an error it leaves at once
    (torchrun then stops the other ranks).
    """
    from ..core import distributed

    info = distributed.init_from_env(device)
    try:
        with warnings.catch_warnings():
            if not info.is_main:  # rank 0 reports; N copies of every warning help nobody
                warnings.simplefilter("ignore")
            yield info.is_main
    except BaseException:
        if info.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()
        raise
    distributed.shutdown()


def drain_with_tqdm(gen: Generator[Progress, None, T], *, quiet: bool = False) -> T:
    """Run a progress generator, showing one tqdm bar per stage; returns its result.

    Under torchrun only rank 0 shows bars (its own share of the per-image stages).
    """
    from tqdm.auto import tqdm

    from ..core import distributed

    quiet = quiet or not distributed.is_main()

    bar, stage = None, None
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            if quiet:
                continue
            if p.stage != stage:
                if bar is not None:
                    bar.close()
                bar, stage = tqdm(total=p.total or None, desc=p.stage, unit="step", leave=True), p.stage
            bar.n = p.step
            post = {} if p.loss is None else {"loss": f"{p.loss:.4f}"}
            if p.message:
                post["item"] = p.message[:24]
            bar.set_postfix(post, refresh=False)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()


def require(path: Path | None, what: str, flag: str) -> Path:
    """A required path option with a clear error when missing."""
    if path is None:
        raise DataError(f"{what} is needed: pass {flag} (or --sample for the built-in sample).")
    return path
