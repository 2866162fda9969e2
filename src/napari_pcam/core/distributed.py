"""Several processes (GPUs) with ``torchrun``: DistributedDataParallel training and sharded per-image work.

Single process is the default and needs nothing from this module: every helper is a no-op when no process
group exists. Under ``torchrun --nproc_per_node=N napari-pcam ...`` the CLI calls :func:`init_from_env`;
then

* the training stages wrap their network in :class:`~torch.nn.parallel.DistributedDataParallel` and give
  every rank its slice of each global batch (``batch_size`` stays the global batch, so the recipe and the
  number of steps do not change with N);
* per-image stages (CAM inference, the random walk, prediction, evaluation) take every N-th image
  (:func:`shard`); each rank writes the files of its own images, and after a :func:`barrier` every rank
  reads the others' from the run folder (so the run folder must be on a file system all ranks see: always
  true on one machine);
* only rank 0 writes the manifest, configs, models, metrics and reports (:func:`is_main`).

The backend is NCCL when the ranks use CUDA and gloo otherwise (CPU runs and tests).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the number of processes and its GPU index on the machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def info() -> DistInfo:
    """The current process group's view (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def is_main() -> bool:
    """True in single-process runs and on rank 0: the process that writes shared files."""
    return info().is_main


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    Without ``WORLD_SIZE`` (a plain run) or with one process this does nothing. With CUDA (``device``
    'auto' or 'cuda') every rank takes the GPU ``LOCAL_RANK`` and NCCL; otherwise gloo on the CPU.

    Raises:
        ConfigError: more ranks on this machine than GPUs, or a named device with several processes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return info()
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run a single process (without torchrun).")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(
            f"--device {device!r} with {world} processes: under torchrun use --device auto or cuda (each rank "
            "takes the GPU of its LOCAL_RANK) or cpu."
        )
    cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use --device auto or cpu.")
    if cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) here: start at most that many "
                "processes per machine (torchrun --nproc_per_node)."
            )
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return info()


def shutdown() -> None:
    """Wait for every rank, then leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank got here (no-op in a single process)."""
    if info().enabled:
        dist.barrier()


def shard(n: int) -> list[int]:
    """Indices of the ``n`` items this rank handles: every ``world_size``-th, starting at its rank."""
    d = info()
    return list(range(d.rank, n, d.world_size))


def rank_slice(items: Sequence[T]) -> list[T]:
    """This rank's part of a global batch (all of it in a single process)."""
    d = info()
    return list(items[d.rank :: d.world_size])


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    d = info()
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (picklable); ``obj`` itself in a single process."""
    if not info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def global_batch(batch_size: int, minimum_per_rank: int = 1) -> int:
    """The global batch for ``batch_size`` so that every rank gets the same, non-empty share.

    In a single process this is ``max(batch_size, minimum_per_rank)``. With N ranks it is rounded up to
    a multiple of N (with a warning when that changes it), and to at least ``minimum_per_rank * N``.
    """
    n = info().world_size
    size = max(batch_size, minimum_per_rank * n)
    if size % n:
        size += n - size % n
    if n > 1 and size != batch_size:
        warnings.warn(
            f"batch size {batch_size} does not split evenly over {n} processes; using a global batch of {size} "
            f"({size // n} per process).",
            stacklevel=2,
        )
    return size


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when several processes train; ``model`` itself otherwise.

    Parameters without ``requires_grad`` (a frozen backbone) are not synchronised, as DDP does.
    On CUDA the BatchNorm layers of ``model`` become SyncBatchNorm (statistics over the global batch, not
    each GPU's few crops; same parameters and buffers, plain BatchNorm in eval mode). PyTorch has no
    SyncBatchNorm on the CPU: gloo runs normalise each process's share of the batch on its own.
    Train through the returned module and keep (and save) ``model``.
    """
    if not info().enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        for name, child in list(model.named_children()):  # in place: ``model`` stays the object callers keep
            setattr(model, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index], output_device=index)
    return DistributedDataParallel(model)


def evaluate(gts: Sequence, preds: Sequence, class_names: Sequence[str]) -> dict:
    """:func:`~napari_pcam.core.metrics.evaluate` with the images shared out over the ranks.

    Every rank accumulates the confusion matrix of its :func:`shard`; the matrices are summed over ranks,
    so every rank returns the same scores as a single process would.
    """
    import numpy as np

    from .metrics import confusion_matrix, scores

    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images for {len(preds)} predictions.")
    n = len(class_names)
    conf = np.zeros((n, n), np.int64)
    for i in shard(len(gts)):
        conf += confusion_matrix(gts[i], preds[i], n)
    return scores(sum(all_gather(conf)), list(class_names))
