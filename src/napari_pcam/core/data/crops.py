"""Training crops made by a DataLoader (worker processes, pinned memory) from a fixed plan of seeded crops.

IRNet and DeepLabv3+ draw their batches from a plan made up front: step ``s`` takes images ``[i0, i1, ...]``
and crop ``j`` of step ``s`` is augmented with its own generator ``default_rng((seed, s, j))``. Whether the
crops are made in the main process or in loader workers, on one rank or shared out over several (each
rank takes its :func:`~napari_pcam.core.distributed.rank_slice` of every step), they are the same crops
(up to the float rounding of the resize: workers run torch with one thread).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .. import distributed

# make(image_index, generator) -> (image crop, label crop)
MakeCrop = Callable[[int, np.random.Generator], tuple[torch.Tensor, torch.Tensor]]


class SeededCrops(torch.utils.data.Dataset):
    """Item ``(step, j, i)``: crop ``j`` of step ``step``, cut from image ``i`` with generator (seed, step, j)."""

    def __init__(self, make: MakeCrop, seed: int):
        self.make, self.seed = make, seed

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        step, j, i = key
        return self.make(i, np.random.default_rng((self.seed, step, j)))


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
    return torch.utils.data.DataLoader(SeededCrops(make, seed), batch_sampler=keys, collate_fn=_stack,
                                       num_workers=num_workers, pin_memory=pin_memory,
                                       # its own generator for the workers' base seed: the global torch
                                       # generator (dropout) is left as it would be without a loader
                                       generator=torch.Generator().manual_seed(seed))
