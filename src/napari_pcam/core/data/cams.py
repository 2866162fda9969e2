"""Class activation maps of one image, and turning them into label images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class CamMaps:
    """Max-normalised CAMs of one image for some foreground classes.

    Attributes:
        keys: int64 (K,) class ids (1..C) the maps belong to, ascending; 0 first for a learnt background map.
        highres: float32 (K, H, W) maps at image resolution, each in [0, 1].
        lowres: float32 (K, ceil(H/4), ceil(W/4)) maps at stride 4 (for the random walk), each in [0, 1].
    """

    keys: np.ndarray
    highres: np.ndarray
    lowres: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return tuple(self.highres.shape[1:])

    def labels(self, threshold: float) -> np.ndarray:
        """uint8/uint16 (H, W) class ids: argmax over [constant background plane; maps]."""
        return cams_to_labels(self.highres, self.keys, threshold)

    def dense(self, num_classes: int) -> np.ndarray:
        """float32 (num_classes, H, W) foreground maps with zeros for classes not in ``keys``."""
        out = np.zeros((num_classes, *self.shape), np.float32)
        fg = self.keys > 0
        out[self.keys[fg] - 1] = self.highres[fg]
        return out

    def save(self, path: str | Path) -> None:
        """Write as a compressed ``.npz`` atomically (keys, highres, lowres)."""
        from ..io import atomic_write

        def write(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez_compressed(f, keys=self.keys, highres=self.highres, lowres=self.lowres)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> "CamMaps":
        """Read a file written by :meth:`save`."""
        try:
            with np.load(path) as f:
                return cls(f["keys"].astype(np.int64), f["highres"], f["lowres"])
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read CAM file {str(path)!r}: {exc}; delete it to recompute.") from exc


def cams_to_labels(maps: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """Argmax over [background plane at ``threshold``; maps], mapped to class ids.

    Args:
        maps: float (K, H, W) scores in [0, 1].
        keys: int (K,) class ids of the maps.
        threshold: Constant background score.

    Returns:
        uint8 (H, W) (uint16 when ids exceed 255) with 0 = background.
    """
    keys = np.asarray(keys, dtype=np.int64)
    lut = np.concatenate([[0], keys])
    dtype = np.uint8 if lut.max() < 255 else np.uint16
    if len(keys) == 0:
        return np.zeros(maps.shape[1:], dtype)
    scores = np.concatenate([np.full((1, *maps.shape[1:]), threshold, maps.dtype), maps], axis=0)
    return lut[np.argmax(scores, axis=0)].astype(dtype)
