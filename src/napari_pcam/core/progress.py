"""The record that every long-running generator in :mod:`napari_pcam.core` yields.

The CLI drains such generators into tqdm bars; the napari plugin runs them in a generator
``thread_worker`` whose ``quit()`` cancels the work at the next ``yield``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long-running job.

    Attributes:
        stage: Short stage name ("pcam", "cams", "irn", ...).
        step: Steps done so far in this stage (1-based once work has started).
        total: Number of steps of this stage (0 when unknown).
        loss: Current training loss, if the stage trains something.
        message: Free text for humans.
        metrics: Extra scalar values (learning rate, point loss, images/s, ...).
        preview: Optional payload for GUIs (e.g. the CAMs of a finished image); never required.
    """

    stage: str
    step: int
    total: int
    loss: float | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    preview: Any = None

    @property
    def fraction(self) -> float:
        """Fraction of the stage done, in [0, 1] (0 when the total is unknown)."""
        return min(1.0, self.step / self.total) if self.total else 0.0


def drain(gen: Generator[Progress, None, T]) -> T:
    """Run a progress generator to the end without reporting and return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
