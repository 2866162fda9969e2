"""napari-pcam: point-supervised semantic segmentation (PCAM -> IRNet -> DeepLabv3+).

The headless API (imported lazily, so ``import napari_pcam`` stays cheap and never imports the GUI)::

    from napari_pcam import RunData, run_pipeline, load_bundle, load_sample, sample_preset, drain
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "PipelineConfig": "napari_pcam.core.config",
    "ImageStack": "napari_pcam.core.data.images",
    "PointAnnotations": "napari_pcam.core.data.points",
    "read_points_csv": "napari_pcam.core.data.points",
    "read_image_folder": "napari_pcam.core.data.readers",
    "load_sample": "napari_pcam.core.data.synthetic",
    "make_synthetic": "napari_pcam.core.data.synthetic",
    "RunData": "napari_pcam.core.pipeline",
    "run_pipeline": "napari_pcam.core.pipeline",
    "load_bundle": "napari_pcam.core.bundle",
    "sample_preset": "napari_pcam.core.presets",
    "Progress": "napari_pcam.core.progress",
    "drain": "napari_pcam.core.progress",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'napari_pcam' has no attribute {name!r}")
