"""Run a function in a thread pool and get its result back on the GUI thread.

``fn`` runs on a pool thread; ``callback`` and ``on_error`` run on the thread the
``BackgroundCalls`` object lives on (the GUI thread), through a queued signal. A failure
is logged with its traceback at the pool thread's boundary and reaches ``on_error`` as a
one-line message for the user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from desktop_app.engine.errors import DesktopAppError

log = logging.getLogger(__name__)


class _Relay(QObject):
    done = Signal(object, object)  # callback, result
    failed = Signal(object, str)  # on_error, message


class _Task(QRunnable):
    def __init__(
        self,
        fn: Callable[[], Any],
        callback: Callable[[Any], None],
        on_error: Callable[[str], None] | None,
        relay: _Relay,
    ) -> None:
        super().__init__()
        self.fn, self.callback, self.on_error, self.relay = fn, callback, on_error, relay

    def run(self) -> None:
        try:
            result = self.fn()
        except DesktopAppError as exc:  # expected (an unreadable photo): the user is told
            log.warning("background task %r failed: %s", self.fn, exc, exc_info=True)
            self._report(str(exc))
            return
        except Exception as exc:  # the thread boundary: keep the traceback for the log
            log.exception("background task %r failed", self.fn)
            self._report(f"{type(exc).__name__}: {exc}")
            return
        try:
            self.relay.done.emit(self.callback, result)
        except RuntimeError:
            pass  # the window closed meanwhile

    def _report(self, message: str) -> None:
        try:
            self.relay.failed.emit(self.on_error, message)
        except RuntimeError:
            pass  # the window closed meanwhile


class BackgroundCalls(QObject):
    """``call(fn, callback)``: fn runs in the pool, callback(result) on the GUI thread."""

    def __init__(self, pool: QThreadPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool
        self._relay = _Relay()
        self._relay.done.connect(lambda cb, result: cb(result))
        self._relay.failed.connect(lambda on_error, msg: on_error(msg) if on_error else None)

    def call(
        self,
        fn: Callable[[], Any],
        callback: Callable[[Any], None],
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.pool.start(_Task(fn, callback, on_error, self._relay))
