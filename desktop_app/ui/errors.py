"""Unexpected errors from any thread: logged where they happen, shown on the GUI thread.

An exception that escapes a slot, a pool task (``QRunnable.run``) or a Python thread
reaches ``sys.excepthook`` / ``threading.excepthook`` on the thread it was raised on.
Building a ``QMessageBox`` there is what Qt forbids (it crashed or corrupted the window),
so the hook only logs the traceback and emits a signal; the ``ErrorReporter`` lives on
the GUI thread, the signal is queued to it, and the dialog is built there (the way
napari and qutebrowser hand errors from other threads to their GUI thread).

Threads: ``hook``/``thread_hook`` run on any thread and touch no widget; ``_show`` runs
on the GUI thread, the reporter's own.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from types import TracebackType

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)


class ErrorReporter(QObject):
    """Make it on the GUI thread; ``install`` points Python's hooks at it."""

    reported = Signal(str, str)  # message, details (the traceback)

    def __init__(self, parent_getter: Callable[[], QWidget | None]) -> None:
        super().__init__()
        self._parent_getter = parent_getter
        self._gui_thread = threading.get_ident()
        self.box: QMessageBox | None = None  # the one error dialog open, if any
        self.unshown = 0  # errors logged while a dialog was already open
        # queued: whichever thread emits, _show runs on this object's thread (the GUI's)
        self.reported.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def install(self) -> None:
        sys.excepthook = self.hook
        threading.excepthook = self.thread_hook

    def hook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        """``sys.excepthook``: may run on any thread (a pool task's error lands here)."""
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        where = threading.current_thread().name
        if threading.get_ident() == self._gui_thread:
            log.error("unexpected error\n%s", details)
        else:  # logged here, shown there: no widget may be built on this thread
            log.error("unexpected error on thread %s (not the GUI's)\n%s", where, details)
        try:
            self.reported.emit(f"Something went wrong: {exc}", details)
        except RuntimeError:  # the reporter is gone (the app is quitting): the log has it
            pass

    def thread_hook(self, args: threading.ExceptHookArgs) -> None:
        """``threading.excepthook``: an error that ended a Python thread (watchdog's)."""
        if args.exc_value is None:
            return
        self.hook(args.exc_type, args.exc_value, args.exc_traceback)

    def _show(self, message: str, details: str) -> None:
        """GUI thread only: one dialog at a time, so a burst of errors is not a wall of them."""
        if self.box is not None and shiboken6.isValid(self.box) and self.box.isVisible():
            self.unshown += 1
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Unexpected error", message, parent=self._parent_getter()
        )
        box.setDetailedText(details)  # selectable and copyable
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.box = box


def install_excepthook(parent_getter: Callable[[], QWidget | None]) -> ErrorReporter:
    """An unexpected exception from any thread is logged and opens a dialog with
    copyable details, on the GUI thread. Call on the GUI thread; keep the reporter."""
    reporter = ErrorReporter(parent_getter)
    reporter.install()
    return reporter
