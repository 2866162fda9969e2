"""The training skeleton shared by PCAM, IRNet and DeepLabv3+: batch plans, the optimiser step with mixed
precision, the poly schedule, DistributedDataParallel, one :class:`Progress` per step, and the record of a
trained network with its checkpoint.

Each stage keeps its own network, optimiser parameter groups, data, augmentation and loss: it builds a
loader of batches (first item: the network's input) and a ``loss_fn(outputs, batch) -> (loss, metrics)``
and drains :func:`fit`.

Plans. Every crop is made with its own generator ``default_rng((seed, a, b))`` (see
:mod:`napari_pcam.core.data.crops`), so a rank's share of a batch, or a loader worker, makes the crops one
process would. IRNet and DeepLab cut one stream of shuffled epochs into batches (:func:`shuffled_batches`,
a NumPy generator; crop keys ``(step, position)``); PCAM shuffles each epoch with a torch generator and
drops the last incomplete batch (:class:`RankBatchSampler`, :func:`epoch_keys`; crop keys
``(epoch, image)``). Both plans are kept as they were, so that seeded runs give the same crops.

Schedule: ``lr = base_lr * (1 - (step - 1) / total) ** 0.9`` at step ``step`` (1-based), IRNet's and
DeepLab's poly schedule: :class:`torch.optim.lr_scheduler.PolynomialLR` in its closed form.

Cancellation: a consumer that stops iterating ends the generator at its last ``yield``; nothing is
written before :func:`fit` returns (the callers save the returned record).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from . import distributed
from .checkpoints import load_checkpoint, save_checkpoint
from .config import to_dict
from .device import autocast
from .errors import CheckpointError, ConfigError, DataError
from .progress import Progress

POWER = 0.9
LossFn = Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]]


def planned_steps(config: Any, by_epochs: int) -> int:
    """Optimiser steps of a stage: ``config.steps`` when set (a budget independent of the number of images),
    else ``by_epochs`` (the stage's ``epochs`` in steps) but at least ``config.min_steps`` and 1."""
    if config.steps > 0:
        return int(config.steps)
    return max(int(by_epochs), int(config.min_steps), 1)


def shuffled_batches(n: int, batch: int, steps: int, rng: np.random.Generator) -> list[list[int]]:
    """IRNet's and DeepLab's plan: image indices of every step's global batch, cut from consecutive
    shuffled epochs (``rng.permutation(n)`` each; a batch may span two epochs)."""
    stream: list[int] = []
    plan = []
    for _ in range(steps):
        while len(stream) < batch:
            stream.extend(int(i) for i in rng.permutation(n))
        plan.append(stream[:batch])
        del stream[:batch]
    return plan


class RankBatchSampler(torch.utils.data.Sampler):
    """PCAM's batches: shuffled batches of ``batch`` indices (the last incomplete one dropped), each cut to
    this rank's share; every iteration is a new epoch.

    Every rank shuffles with the same generator, so the ranks together see exactly the batches of a single
    process (whose share is the whole batch).
    """

    def __init__(self, n: int, batch: int, generator: torch.Generator):
        self.n, self.batch, self.generator = n, batch, generator

    def __len__(self) -> int:
        return self.n // self.batch

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for b in range(len(self)):
            yield distributed.rank_slice(order[b * self.batch : (b + 1) * self.batch])


def epoch_keys(n: int, batch: int, steps: int, generator: torch.Generator) -> list[list[tuple[int, int, int]]]:
    """PCAM's plan: this rank's crop keys ``(epoch, i, i)`` (image ``i``, generator (seed, epoch, i)) of every
    step, over as many epochs of :class:`RankBatchSampler` as ``steps`` takes (``n >= batch``)."""
    sampler = RankBatchSampler(n, batch, generator)
    keys: list[list[tuple[int, int, int]]] = []
    epoch = 0
    while len(keys) < steps:
        keys += [[(epoch, i, i) for i in b] for b in sampler][: steps - len(keys)]
        epoch += 1
    return keys


class ClosedFormPolynomialLR(torch.optim.lr_scheduler.PolynomialLR):
    """:class:`~torch.optim.lr_scheduler.PolynomialLR` computed from the base lr every step.

    PyTorch's ``get_lr`` multiplies the previous lr by a ratio, which drifts from the closed form by a few
    units in the last place; its ``_get_closed_form_lr`` is the formula itself (the poly schedule as IRNet
    and DeepLab write it).
    """

    def get_lr(self) -> list[float]:
        return self._get_closed_form_lr()


def poly_schedule(optimizer: torch.optim.Optimizer, total: int) -> ClosedFormPolynomialLR:
    """The poly schedule (power 0.9) over ``total`` steps of every parameter group of ``optimizer``."""
    return ClosedFormPolynomialLR(optimizer, total_iters=max(total, 1), power=POWER)


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling for float16 on CUDA; a disabled scaler (plain steps) elsewhere."""
    return torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
    """Backward pass and one optimiser step (with a disabled scaler: ``loss.backward(); optimizer.step()``)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of ``batch`` (nested in tuples and lists) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


def check_finite(loss: float, step: int, settings: str) -> None:
    """Raises DataError when the loss of ``step`` is nan or infinite, naming the learning-rate settings."""
    if not math.isfinite(loss):
        raise DataError(f"training diverged at step {step} (loss {loss}); lower the learning rates ({settings}).")


def fit(
    stage: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable,
    total: int,
    loss_fn: LossFn,
    *,
    device: torch.device,
    amp: bool,
    lr_settings: str,
    lr_group: int = 0,
) -> Generator[Progress, None, list[float]]:
    """Train ``model`` on ``batches``; yields one :class:`Progress` per optimiser step, returns the losses.

    Args:
        stage: Name of the stage in the records.
        model: The network on ``device``; it trains through :func:`~napari_pcam.core.distributed.wrap`
            and is left in eval mode.
        optimizer: SGD over the parameters to train; its groups' lrs are the base lrs of the schedule.
        batches: ``total`` batches, each a tuple whose first item is the network input.
        loss_fn: ``(network outputs, batch on the device) -> (scalar loss, float metrics)``; the forward
            pass runs under :func:`~napari_pcam.core.device.autocast`, the loss outside it.
        amp: float16 on CUDA (with loss scaling).
        lr_settings: The settings to lower when the loss diverges (named in the error).
        lr_group: The parameter group whose lr is reported.

    Raises:
        DataError: the loss of a step is not finite.
    """
    schedule = poly_schedule(optimizer, total)
    scaler = grad_scaler(device, amp)
    world = distributed.info().world_size
    model.train()
    net = distributed.wrap(model, device)  # DistributedDataParallel under torchrun, the model itself otherwise
    losses: list[float] = []
    images, start = 0, time.perf_counter()
    try:
        for step, batch in enumerate(batches, start=1):
            batch = to_device(batch, device)
            lr = optimizer.param_groups[lr_group]["lr"]
            with autocast(device, amp):
                outputs = net(batch[0])
            loss, metrics = loss_fn(outputs, batch)
            optimizer_step(optimizer, scaler, loss)
            _advance(schedule, first=step == 1 and scaler.is_enabled())
            losses.append(float(loss.detach()))
            check_finite(losses[-1], step, lr_settings)
            images += len(batch[0]) * world
            speed = images / max(time.perf_counter() - start, 1e-9)
            yield Progress(stage, step, total, loss=losses[-1], metrics={**metrics, "lr": lr, "images_per_s": speed})
    finally:
        model.eval()
    return losses


def _advance(schedule: ClosedFormPolynomialLR, first: bool) -> None:
    if not first:
        schedule.step()
        return
    with warnings.catch_warnings():  # the scaler skips the first steps while it finds its scale
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before")
        schedule.step()


class TrainedNetwork:
    """A trained network with its config, saved as a checkpoint of :mod:`napari_pcam.core.checkpoints`.

    Subclasses (dataclasses with at least ``model`` and ``config``) name their ``kind`` and describe their
    checkpoint: :meth:`checkpoint_fields` (class names, image channels, extra plain data) for saving,
    :meth:`from_checkpoint` for loading.
    """

    kind: ClassVar[str]
    network: ClassVar[str]  # for messages: "a DeepLabv3+", ...
    model: nn.Module
    config: Any

    def checkpoint_fields(self) -> dict[str, Any]:
        """``class_names``, ``in_channels`` and optional ``extra`` of this network's checkpoint."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], source: str, **options: Any) -> TrainedNetwork:
        """The record of a checkpoint's contents (checked by :func:`load_checkpoint`)."""
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write ``{format_version, kind, config, class_names, in_channels, state_dict, extra}`` atomically."""
        save_checkpoint(path, kind=self.kind, config=to_dict(self.config), state_dict=self.model.state_dict(),
                        **self.checkpoint_fields())

    @classmethod
    def load(cls, path: str | Path, class_names: Sequence[str] | None = None, **options: Any):
        """Read a checkpoint written by :meth:`save` (on the CPU, ``weights_only=True``).

        Args:
            path: The checkpoint file.
            class_names: When given, the checkpoint's classes must be exactly these.
            options: Passed to :meth:`from_checkpoint` (e.g. ``device``).

        Raises:
            CheckpointError: missing, corrupt or foreign file, another format version or kind, other
                classes, an invalid config, or weights that do not fit the network.
        """
        data = load_checkpoint(path, kind=cls.kind, class_names=class_names)
        try:
            return cls.from_checkpoint(data, str(path), **options)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"{str(path)!r} does not hold a usable {cls.network}: {exc}") from exc


def load_state(model: nn.Module, state: object, source: str, network: str) -> None:
    """``model.load_state_dict(state)`` (strict), or a CheckpointError naming ``source`` and ``network``."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} has no state dict of tensors.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise CheckpointError(f"the weights in {source} do not fit {network}: {detail}") from exc
