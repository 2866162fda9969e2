"""Running a function over jobs in worker processes."""

import operator

import pytest

from napari_pcam.core.processes import process_map


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_in_order(workers):
    jobs = [(i, 10 * i) for i in range(7)]
    assert list(process_map(operator.add, jobs, workers, window=2)) == [11 * i for i in range(7)]


def test_jobs_are_consumed_lazily():
    taken = []

    def jobs():
        for i in range(100):
            taken.append(i)
            yield (i, 1)

    it = process_map(operator.add, jobs(), 1, window=3)
    assert next(it) == 1
    assert len(taken) <= 4  # a window ahead, not the whole iterable
    it.close()  # early close: queued jobs are dropped, the pool shuts down
    assert len(taken) <= 4


def test_errors_reach_the_caller():
    with pytest.raises(ZeroDivisionError):
        list(process_map(operator.truediv, [(1, 1), (1, 0)], 1))
