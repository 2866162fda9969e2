"""The activity dock's bar: fed by core's Progress records, one stage at a time, its Cancel calls back."""

from __future__ import annotations

import pytest

from napari_pcam.core.progress import Progress
from napari_pcam.gui.activity import ActivityBar


@pytest.mark.gui
def test_the_bar_follows_the_records_stage_by_stage():
    bar = ActivityBar("train img")
    try:
        bar.show(Progress("pcam", 3, 10))
        assert (bar.bar.desc, bar.bar.n, bar.bar.total) == ("train img: pcam: ", 3, 10)
        bar.show(Progress("irn", 1, 4, loss=0.5))
        assert (bar.bar.desc, bar.bar.n, bar.bar.total) == ("train img: irn: ", 1, 4)
    finally:
        bar.close()
    assert bar.closed
    bar.show(Progress("irn", 2, 4))  # a record after the end changes nothing
    assert bar.bar.n == 1


@pytest.mark.gui
def test_a_record_that_arrives_while_the_bar_updates_is_shown_afterwards():
    """napari's bar widget processes events inside its updates: a later record may arrive in the middle."""
    bar = ActivityBar("apply")
    later = [Progress("final", 2, 2)]
    bar.bar.events.value.connect(lambda _event: bar.show(later.pop()) if later else None)
    try:
        bar.show(Progress("final", 1, 2))
        assert (bar.bar.n, bar.bar.total) == (2, 2), "the bar ends at the latest record"
    finally:
        bar.close()


@pytest.mark.gui
def test_cancel_calls_back_once():
    calls = []
    bar = ActivityBar("train", on_cancel=lambda: calls.append(1))
    try:
        bar.bar.cancel()  # what the activity dock's Cancel button calls
        bar.bar.cancel()
        assert calls == [1] and bar.bar.is_canceled
    finally:
        bar.close()
