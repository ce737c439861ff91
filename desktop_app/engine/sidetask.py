"""One piece of a search run beside the rest of it on a short-lived thread.

A search's pieces that spend their time in OpenCV, ONNX Runtime, torch or the vector
store's search release the GIL, so two of them overlap on two cores instead of adding
up: ``queries`` computes the query's keypoints while it embeds the windows, ``partial``
asks the store for the windows' neighbours while it asks for the regions', and runs the
colour check while it verifies keypoints.

Threads: the task runs on its own daemon thread and writes only what its function
writes; the thread that made it must ``join`` it before reading any of that, and gets
the task's exception there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from desktop_app.engine.errors import SearchCancelled

log = logging.getLogger(__name__)

S = TypeVar("S")
M = TypeVar("M")


class SideTask:
    """Runs ``fn`` on a thread of its own; ``join`` waits and re-raises its exception on
    the caller's thread (so a failure reaches the search's caller)."""

    def __init__(self, fn: Callable[[], None], name: str) -> None:
        self._fn = fn
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # handed to the joining thread
            self._error = exc

    def join(self, quiet: bool = False) -> None:
        """Wait; then re-raise the task's exception, or with ``quiet`` (the joining
        thread has an error of its own to report) log it. The exception is dropped from
        here either way (its traceback would keep the query's images)."""
        self._thread.join()
        error, self._error = self._error, None
        if error is None:
            return
        if not quiet:
            raise error
        if not isinstance(error, SearchCancelled):
            log.warning("%s failed too: %s: %s", self._thread.name, type(error).__name__, error)


def beside(side: Callable[[], S], main: Callable[[], M], name: str) -> tuple[S, M]:
    """``main`` on this thread while ``side`` runs on a :class:`SideTask` named
    ``name``; both results. The side task is joined before this returns, also when
    ``main`` raises (then ``main``'s error is the one raised, and the side's is logged)."""
    result: list[S] = []
    task = SideTask(lambda: result.append(side()), name)
    try:
        out = main()
    except BaseException:
        task.join(quiet=True)
        raise
    task.join()
    return result[0], out
