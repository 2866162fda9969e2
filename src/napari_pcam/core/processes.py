"""Run a pure function over many jobs in worker processes, results in order, a bounded number in flight.

Used where C extensions hold the GIL for long stretches (the dense CRF): in another process they slow
neither the training thread nor a viewer's event loop. Workers are *spawned* (not forked), so the pool is
safe to start from a thread of a Qt application; the function must be importable (module level) and its
module cheap to import.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def process_map(fn: Callable[..., Any], jobs: Iterable[tuple], workers: int, *, window: int | None = None
                ) -> Iterator[Any]:
    """``fn(*job)`` for every job, in order.

    Args:
        fn: Module-level function (pickled by reference).
        jobs: Argument tuples; consumed lazily, at most ``window`` ahead of the results.
        workers: Worker processes; 0 runs every job here, in this process.
        window: Jobs in flight at once (default: twice the workers).

    Closing the iterator early (a cancelled run) drops the queued jobs and waits only for running ones.
    """
    if workers <= 0:
        for job in jobs:
            yield fn(*job)
        return
    window = max(1, window or 2 * workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[Future] = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(fn, *job))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
