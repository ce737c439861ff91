"""Run a function in a thread pool and get its result back on the GUI thread."""

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
        except Exception as exc:
            if isinstance(exc, DesktopAppError):  # expected (an unreadable file): its words
                log.info("background task failed: %s", exc)
            else:  # a bug: keep the traceback in the log
                log.exception("background task failed")
            try:
                self.relay.failed.emit(self.on_error, str(exc))
            except RuntimeError:
                pass
            return
        try:
            self.relay.done.emit(self.callback, result)
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
