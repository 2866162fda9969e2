"""Training crops made by a DataLoader (worker processes, pinned memory) from a fixed plan of seeded crops.

The training stages draw their batches from a plan made up front (see :mod:`napari_pcam.core.training`):
a crop is keyed ``(a, b, i)``, cut from image ``i`` with its own generator ``default_rng((seed, a, b))``.
IRNet and DeepLabv3+ key crop ``j`` of step ``s`` ``(s, j, i)`` (:func:`crop_loader`); PCAM keys image ``i``
in epoch ``e`` ``(e, i, i)``. Whether the crops are made in the main process or in loader workers, on one
rank or shared out over several (each rank takes its :func:`~napari_pcam.core.distributed.rank_slice` of
every step), they are the same crops (up to the float rounding of the resize: workers run torch with one
thread).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .. import distributed

# make(image_index, generator) -> (image crop, label crop, ...)
MakeCrop = Callable[[int, np.random.Generator], tuple]
Key = tuple[int, int, int]


class SeededCrops(torch.utils.data.Dataset):
    """Item ``(a, b, i)``: a crop of image ``i`` cut with generator ``default_rng((seed, a, b))``."""

    def __init__(self, make: MakeCrop, seed: int):
        self.make, self.seed = make, seed

    def __getitem__(self, key: Key) -> tuple:
        a, b, i = key
        return self.make(i, np.random.default_rng((self.seed, a, b)))


def _stack(batch):
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


def crop_loader(make: MakeCrop, plan: Sequence[Sequence[int]], seed: int, *, num_workers: int = 0,
                pin_memory: bool = False, first_step: int = 0) -> torch.utils.data.DataLoader:
    """Batches ``(images, labels)`` for every step of ``plan`` (image indices per step), this rank's share.

    Args:
        make: Cuts one crop; must be picklable when ``num_workers`` > 0 (a module-level class or function).
        plan: Image indices of each step's global batch.
        seed: Seed of the crops' generators.
        num_workers: Loader worker processes (0 = in this process).
        pin_memory: Page-locked batches for fast copies to a GPU.
        first_step: Number of the plan's first step in the crop seeds.
    """
    keys = [distributed.rank_slice([(step, j, int(i)) for j, i in enumerate(batch)])
            for step, batch in enumerate(plan, start=first_step)]
    return seeded_loader(make, keys, seed, num_workers=num_workers, pin_memory=pin_memory)


def seeded_loader(make: MakeCrop, keys: Sequence[Sequence[Key]], seed: int, *,
                  collate_fn: Callable[[list], Any] = _stack, num_workers: int = 0,
                  pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """One batch per entry of ``keys`` (this rank's crop keys of each step), collated by ``collate_fn``.

    Arguments as in :func:`crop_loader`.
    """
    return torch.utils.data.DataLoader(SeededCrops(make, seed), batch_sampler=keys, collate_fn=collate_fn,
                                       num_workers=num_workers, pin_memory=pin_memory,
                                       # its own generator for the workers' base seed: the global torch
                                       # generator (dropout) is left as it would be without a loader
                                       generator=torch.Generator().manual_seed(seed))
