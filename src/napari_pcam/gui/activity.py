"""A job's progress in napari's activity dock, next to the widget's own bar, with napari's Cancel button.

The widgets run core's generators in thread workers and receive their :class:`Progress` records in the GUI
thread; :class:`ActivityBar` turns each record into an update of a ``napari.utils.cancelable_progress``
(the activity dock shows it, with a Cancel button, in the lower right of the viewer). Cancel there does
what the widget's own Cancel does: ``worker.quit()``, the job stops at its next step.
"""

from __future__ import annotations

from typing import Callable

from napari.utils import cancelable_progress

from ..core.progress import Progress


class _CancelableProgress(cancelable_progress):
    """napari's cancelable progress, whose cancel also calls back when it is not iterated.

    napari calls ``cancel_callback`` only from inside its own ``for`` loop; here the work runs in a thread
    worker and the bar is fed by hand, so :meth:`cancel` (the activity dock's Cancel button) calls it.
    """

    def cancel(self) -> None:
        already = self.is_canceled
        super().cancel()
        if not already and self.cancel_callback is not None:
            self.cancel_callback()


class ActivityBar:
    """A job's bar in the activity dock, one stage at a time ("train: pcam", step / total of the stage).

    Args:
        name: What the job is ("train", "apply"), the start of the bar's description.
        on_cancel: Called (in the GUI thread) when the user presses the bar's Cancel button.
    """

    def __init__(self, name: str, on_cancel: Callable[[], None] | None = None):
        self.name = name
        self.stage: str | None = None
        self._closed = False
        self._busy = False
        self._latest: Progress | None = None
        self.bar = _CancelableProgress(total=0, desc=name, cancel_callback=on_cancel)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (the bar has left the activity dock)."""
        return self._closed

    def show(self, progress: Progress) -> None:
        """Move the bar to a progress record (a new stage resets it to that stage's total).

        napari's bar widget runs ``QApplication.processEvents()`` on every change of its value or text, so
        only changes are passed on, and records that arrive meanwhile (re-entrantly) are not shown one by
        one: the bar moves to the latest of them once the current change is done.
        """
        self._latest = progress
        if self._closed or self._busy:
            return
        self._busy = True
        try:
            while self._latest is not None and not self._closed:
                record, self._latest = self._latest, None
                self._move(record)
        finally:
            self._busy = False

    def _move(self, progress: Progress) -> None:
        if progress.stage != self.stage:
            self.stage = progress.stage
            self.bar.total = max(0, int(progress.total))
            self.bar.set_description(f"{self.name}: {progress.stage}")
        n = min(int(progress.step), self.bar.total) if self.bar.total else int(progress.step)
        if n != self.bar.n:
            self.bar.n = n
            self.bar.update(0)  # emits the value event with the new n

    def close(self) -> None:
        """Take the bar out of the activity dock (the job ended, finished or cancelled)."""
        if not self._closed:
            self._closed = True
            self.bar.close()
