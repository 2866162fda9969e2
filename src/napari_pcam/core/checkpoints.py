"""Checkpoints are data: ``{format_version, kind, config, class_names, in_channels, state_dict, ...}``.

Only tensors and plain Python values are stored, so they load with ``torch.load(weights_only=True)``;
they are written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import CheckpointError
from .io import atomic_write

FORMAT_VERSION = 1


def save_checkpoint(
    path: str | Path,
    *,
    kind: str,
    config: dict[str, Any],
    class_names: Sequence[str],
    in_channels: int,
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (tensors moved to the CPU)."""
    from .. import __version__

    payload = {
        "format_version": FORMAT_VERSION,
        "napari_pcam_version": __version__,
        "kind": kind,
        "config": config,
        "class_names": list(class_names),
        "in_channels": int(in_channels),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "extra": extra or {},
    }
    atomic_write(path, lambda p: torch.save(payload, p))


def load_checkpoint(path: str | Path, *, kind: str, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Read and check a checkpoint.

    Args:
        path: File written by :func:`save_checkpoint`.
        kind: Expected kind ('pcam', 'irn', 'deeplab', ...).
        class_names: When given, the checkpoint's classes must match exactly.

    Raises:
        CheckpointError: missing or corrupt file, another format version or kind, other classes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with objects, truncated file ...
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a napari-pcam checkpoint ({exc.__class__.__name__}); "
            "retrain or restore it from a backup."
        ) from exc
    if not isinstance(data, dict) or "format_version" not in data or "state_dict" not in data:
        raise CheckpointError(f"{str(path)!r} is not a napari-pcam checkpoint (no format_version/state_dict).")
    if data["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {data['format_version']}, this napari-pcam reads version "
            f"{FORMAT_VERSION}; retrain with this version or use the napari-pcam version that wrote it "
            f"({data.get('napari_pcam_version', 'unknown')})."
        )
    if data.get("kind") != kind:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {data.get('kind')!r} model, expected {kind!r}.")
    if class_names is not None and list(data.get("class_names", [])) != list(class_names):
        raise CheckpointError(
            f"checkpoint {str(path)!r} was trained for classes {data.get('class_names')}, but the current classes are "
            f"{list(class_names)}; use matching classes or retrain."
        )
    return data
