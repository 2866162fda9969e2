"""A read-only sequence whose items are made on access, so that large datasets never sit in memory at once.

``LazySequence(paths, CamMaps.load)`` reads one CAM file per access, ``LazySequence(cams, to_labels)``
converts on access, and ``.subset(indices)`` gives a view of some items. Run folders fingerprint such a
sequence by its source (see ``__repr__``), never by reading every item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable


class LazySequence(Sequence):
    """``fn(source[i])`` for the chosen indices of ``source``, computed on every access (not cached).

    Args:
        source: Any sequence (a list of paths, another lazy sequence, ...).
        fn: Applied to each item on access; None returns the item itself.
        indices: The items of ``source`` to expose, in order (default: all).
    """

    def __init__(self, source: Sequence, fn: Callable[[Any], Any] | None = None, indices: Sequence[int] | None = None):
        self.source, self.fn = source, fn
        self.indices = list(range(len(source))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        item = self.source[self.indices[i]]
        return item if self.fn is None else self.fn(item)

    def subset(self, indices: Sequence[int]) -> "LazySequence":
        """A view of the items at ``indices``."""
        return LazySequence(self.source, self.fn, [self.indices[i] for i in indices])

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"LazySequence({self.source!r}, {name}, {self.indices!r})"


def take(items: Sequence, indices: Sequence[int]) -> Sequence:
    """The items at ``indices``: a lazy view of a lazy sequence, a list otherwise."""
    if isinstance(items, LazySequence):
        return items.subset(indices)
    return [items[i] for i in indices]
