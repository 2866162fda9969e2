"""The generators the widgets run in napari thread workers: no Qt here, only calls into core.

Each yields core's :class:`Progress` records and returns a result, so a worker's ``quit()`` stops it at
the next yield (the core generators are closed there, which keeps finished stages on disk). Stages are
chained by :func:`~napari_pcam.core.pipeline.run_pipeline` only, fine-tuning included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Generator, Sequence

import numpy as np
import torch

from ..core.batch import BatchReport, segment_folder
from ..core.config import PipelineConfig
from ..core.data.images import ImageStack
from ..core.io import make_folder, write_tiff
from ..core.pipeline import RunData, RunResult, run_pipeline
from ..core.progress import Progress
from ..core.stages.cam import TrainedCam
from .models import label_image

# In the viewer the dense CRFs (IRNet's, and deeplab.crf's) run in a worker process by default: their C++
# code holds the GIL for up to 50 ms per call on a 128 x 128 image (longer on larger ones), which otherwise
# stalls the event loop (gaps over 100 ms while mining).
VIEWER_CRF_WORKERS = 1

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
    """Run the pipeline into ``out``, from the configured weights or fine-tuning ``init``.

    Args:
        data: Training images and points.
        config: Pipeline settings.
        out: Run folder.
        until: Last stage to run (one of core's ``STAGES``).
        force: Recompute stages whose cached results were made with other data or settings.
        init: Previous PCAM classifier to fine-tune instead of training from the configured weights
            (the later stages then follow from the fine-tuned PCAM).
        threads: torch intra-op threads for this job (None leaves torch's setting), so that training on
            the CPU leaves a core for the viewer.
    """
    if threads:
        torch.set_num_threads(threads)
    return (yield from run_pipeline(data, config, out, until=until, force=force, init=init))


def predict_job(model, stack: ImageStack, threads: int | None = None, crf_workers: int = VIEWER_CRF_WORKERS,
                heatmaps: bool = True) -> Generator[Progress, None, None]:
    """Apply a predictor (see :mod:`.models`) to every image of ``stack``; a model with ``deeplab.crf`` runs
    the CRF in ``crf_workers`` processes; ``heatmaps=False`` leaves out the PCAM heatmaps."""
    if threads:
        torch.set_num_threads(threads)
    yield from model.predict(stack, crf_workers=crf_workers, heatmaps=heatmaps)


def predict_layers_job(model, stacks: Sequence[ImageStack], names: Sequence[str], targets: Sequence[Path] | None,
                       threads: int | None = None, crf_workers: int = VIEWER_CRF_WORKERS
                       ) -> Generator[Progress, None, BatchReport]:
    """Apply a predictor to the images of several layers (labels only, no heatmaps), one after the other.

    Yields ``Progress("apply", layers done, layers, message=layer name, preview=(layer index, record))``
    for every record of the predictor; with ``targets`` (checked by the caller), each layer's labels are
    also written there (a stack as Z x H x W), atomically, once the layer is done.
    """
    if threads:
        torch.set_num_threads(threads)
    report = BatchReport()
    if targets:
        make_folder(Path(targets[0]).parent)
    for k, (stack, name) in enumerate(zip(stacks, names)):
        labels: dict[int, np.ndarray] = {}
        for record in model.predict(stack, crf_workers=crf_workers, heatmaps=False):
            if isinstance(record.preview, np.ndarray):
                labels[record.step - 1] = record.preview
            yield Progress("apply", k, len(stacks), message=name, preview=(k, record))
        if targets:
            planes = [labels[i] for i in range(len(stack))]
            write_tiff(targets[k], np.stack(planes) if len(planes) > 1 else planes[0],
                       axes="ZYX" if len(planes) > 1 else None)
            report.written.append(Path(targets[k]))
        yield Progress("apply", k + 1, len(stacks), message=name)
    return report


def predict_folder_job(model, folder: Path, out: Path | None, overwrite: bool, threads: int | None = None
                       ) -> Generator[Progress, None, BatchReport]:
    """Segment every image file of ``folder`` into label TIFFs (core's :func:`segment_folder`)."""
    if threads:
        torch.set_num_threads(threads)
    return (yield from segment_folder(folder, lambda img: label_image(model, img), out, overwrite=overwrite))
