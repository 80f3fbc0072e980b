"""Progress of one analysis: the callback analyze() calls, and a rich display of it.

``analyze(..., progress=fn)`` calls ``fn(stage, done, total)`` with stage
``"trace"`` (once, before tracing), ``"propagate"`` (after each graph node,
``total`` being the node count) and ``"count"`` (once, before counting);
``total`` is 0 when unknown. The callback must be cheap: it runs once per node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported when a bar is shown: analyze() alone needs none
    from rich.console import Console
    from rich.progress import Progress, TaskID

ProgressFn = Callable[[str, int, int], None]

STAGES = {
    "trace": "tracing the model",
    "propagate": "propagating shapes",
    "count": "counting ops",
}


def no_progress(stage: str, done: int, total: int) -> None:
    """The callback used when none is given."""


class LiveProgress:
    """A transient rich progress bar that appears only once an analysis has run
    for ``delay`` seconds, so small models print nothing at all.

    Use as a context manager around the analysis and pass the object itself as
    ``progress=``; leaving the context removes the display, also on error.
    """

    def __init__(self, console: Console, delay: float = 0.5) -> None:
        self._console = console
        self._delay = delay
        self._lock = threading.Lock()
        self._state: tuple[str, int, int] = ("trace", 0, 0)
        self._timer: threading.Timer | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._closed = False
        self.shown = False
        """Whether the display ever appeared (for tests and callers)."""

    def __enter__(self) -> LiveProgress:
        if self._delay > 0:
            self._timer = threading.Timer(self._delay, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._bar is not None:
                self._bar.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._state = (stage, done, total)
            if self._bar is None and self._delay <= 0 and not self._closed:
                self._start()
            elif self._bar is not None:
                self._update()

    def _show(self) -> None:
        with self._lock:
            if not self._closed and self._bar is None:
                self._start()

    def _start(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
        )
        self._update()
        self._bar.start()
        self.shown = True

    def _update(self) -> None:
        assert self._bar is not None
        stage, done, total = self._state
        description = STAGES.get(stage, stage)
        if self._task is not None and self._bar.tasks[0].description == description:
            self._bar.update(self._task, completed=done)
            return
        # a new stage: a fresh task (a bar with its own total, or a spinner when
        # the total is unknown), drawn at once
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total or None, completed=done)
        self._bar.refresh()
