"""The output folder of a run: its layout, its manifest and the cache of finished stages.

A stage is finished when ``run.json`` records it with the same key: a hash of the data and of every
config section the stage (and the stages before it) depends on. A rerun skips finished stages (resume);
a changed config makes the affected stages stale, and they are recomputed only with ``force`` so that
nothing a user made is overwritten by accident. Folders napari-pcam did not make are never written into
without ``force``.

Under ``torchrun`` (see :mod:`.distributed`) rank 0 checks and creates the folder first and is the only
writer of the manifest; the other ranks read it after a barrier and keep their copy in step in memory, so
every rank takes the same cache decisions.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed
from .errors import OutputError, PcamError
from .io import atomic_write_text, make_folder

MANIFEST = "run.json"


def fingerprint(*parts: Any) -> str:
    """Stable short hash of arrays, dicts, lists and scalars."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, np.ndarray):
            h.update(str((x.shape, x.dtype.str)).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        elif isinstance(x, dict):
            feed(json.dumps(x, sort_keys=True, default=str))
        else:
            h.update(repr(x).encode())

    for p in parts:
        feed(p)
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of napari-pcam, Python and the main libraries (written next to the results)."""
    import torch
    import torchvision

    from .. import __version__

    return {
        "napari_pcam": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "cuda": str(torch.version.cuda),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


class StaleStageError(PcamError):
    """Results of a stage exist but were made with other data or settings."""


class RunFolder:
    """Layout and manifest of one output folder."""

    def __init__(self, root: str | Path, *, force: bool = False):
        self.root = Path(root)
        self.force = force
        self.manifest_path = self.root / MANIFEST
        if not distributed.info().enabled:
            self._open()
            return
        if distributed.is_main():  # rank 0 checks and creates the folder before the others look at it
            self._open()
        distributed.barrier()
        if not distributed.is_main():
            self._open()
        distributed.barrier()  # nobody changes the manifest before every rank has read it

    def _open(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise PcamError(f"output {str(self.root)!r} exists and is not a folder.")
        try:
            foreign = self.root.is_dir() and any(self.root.iterdir()) and not self.manifest_path.is_file()
        except OSError as exc:
            raise OutputError(f"cannot look into the output folder {str(self.root)!r}: {exc.strerror or exc}.") from exc
        if foreign and not self.force:
            raise PcamError(
                f"output folder {str(self.root)!r} is not empty and was not made by napari-pcam; choose another "
                "--out or pass --force to write into it anyway."
            )
        make_folder(self.root)  # checks that files can be written there first (OutputError naming the path)
        self.manifest = self._read_manifest()

    def _read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"stages": {}}
        try:
            data = json.loads(self.manifest_path.read_text())
            data.setdefault("stages", {})
            return data
        except (json.JSONDecodeError, OSError):
            return {"stages": {}}

    def path(self, *parts: str) -> Path:
        """A path inside the folder (parents are created when writing)."""
        return self.root.joinpath(*parts)

    def is_done(self, stage: str, key: str) -> bool:
        """True when the stage finished with this key; raises when it finished with another key and not force."""
        entry = self.manifest["stages"].get(stage)
        if entry is None:
            return False
        if entry.get("key") == key:
            return True
        if not self.force:
            raise StaleStageError(
                f"{str(self.root)!r} already holds '{stage}' results made with other data or settings; pass --force "
                "to recompute the affected stages, or choose another --out to keep both."
            )
        return False

    def mark_done(self, stage: str, key: str, seconds: float, **info: Any) -> None:
        """Record a finished stage (after its outputs were written)."""
        self.manifest["stages"][stage] = {"key": key, "seconds": round(seconds, 3), **info}
        self.save_manifest()

    def forget(self, stage: str) -> None:
        """Drop a stage from the manifest (before recomputing it)."""
        if self.manifest["stages"].pop(stage, None) is not None:
            self.save_manifest()

    def save_manifest(self) -> None:
        """Write the manifest atomically (rank 0 only under torchrun; the others keep it in memory)."""
        self.manifest["versions"] = versions()
        if not distributed.is_main():
            return
        atomic_write_text(self.manifest_path, json.dumps(self.manifest, indent=2) + "\n")

    def seconds(self) -> dict[str, float]:
        """Wall time of every finished stage."""
        return {k: v.get("seconds", 0.0) for k, v in self.manifest["stages"].items()}
