"""Run a progress generator to its end in a test, keeping what it yielded: the records and its return value."""

from __future__ import annotations

from typing import Generator, TypeVar

T = TypeVar("T")


def records_and_result(gen: Generator) -> tuple[list, T]:
    """Every record ``gen`` yields (in order) and the value it returns."""
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            return records, stop.value
