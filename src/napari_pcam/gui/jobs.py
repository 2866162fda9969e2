"""The generators the widgets run in napari thread workers: no Qt here, only calls into core.

Each yields core's :class:`Progress` records and returns a result, so a worker's ``quit()`` stops it at
the next yield (the core generators are closed there, which keeps finished stages on disk).
"""

from __future__ import annotations

from pathlib import Path
from typing import Generator

import torch

from ..core.config import PipelineConfig
from ..core.data.images import ImageStack
from ..core.pipeline import RunData, RunResult, image_keys, run_pipeline
from ..core.progress import Progress
from ..core.stages.cam import TrainedCam, train_cam
from ..core.stages.cam_inference import compute_all_cams

FINETUNE_DIR = "finetuned"


def training_job(
    data: RunData,
    config: PipelineConfig,
    out: Path,
    *,
    until: str,
    force: bool,
    init: TrainedCam | None = None,
    threads: int | None = None,
) -> Generator[Progress, None, RunResult]:
    """Run the pipeline (or fine-tune the previous PCAM) into ``out``.

    Args:
        data: Training images and points.
        config: Pipeline settings.
        out: Run folder.
        until: Last stage to run.
        force: Recompute stages whose cached results were made with other data or settings.
        init: Previous PCAM classifier to fine-tune instead of training from the configured weights.
        threads: torch intra-op threads for this job (None leaves torch's setting), so that training on
            the CPU leaves a core for the viewer.
    """
    if threads:
        torch.set_num_threads(threads)
    if init is None:
        return (yield from run_pipeline(data, config, out, until=until, force=force))
    return (yield from finetune_job(data, config, Path(out) / FINETUNE_DIR, init))


def finetune_job(
    data: RunData, config: PipelineConfig, out: Path, init: TrainedCam
) -> Generator[Progress, None, RunResult]:
    """Continue training ``init`` on the current points, then compute its CAMs (stages 'pcam', 'cams').

    The fine-tuned model goes to ``out/models/pcam.pt``, a folder of its own, so that the run folder's
    cache of from-scratch results stays truthful.
    """
    trained = yield from train_cam(data.images, data.points, config.cam, runtime=config.runtime, init=init)
    path = Path(out) / "models" / "pcam.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    trained.save(path)
    keys = image_keys(data.points, len(data.images), config.cam_inference.restrict_to_labels)
    cams = yield from compute_all_cams(
        trained.model, data.images, config.cam_inference, image_keys=keys, amp=config.runtime.amp
    )
    return RunResult(Path(out), cams=cams, pcam=trained)


def predict_job(model, stack: ImageStack, threads: int | None = None) -> Generator[Progress, None, None]:
    """Apply a predictor (see :mod:`.models`) to every image of ``stack``."""
    if threads:
        torch.set_num_threads(threads)
    yield from model.predict(stack)
