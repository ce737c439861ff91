"""Live folder watching for the window: the Qt face of ``engine/watching.py``.

Threads: ``FolderWatcher`` lives on the GUI thread and never touches the file system.
Scheduling watches (a recursive walk of each tree), the periodic check that each root is
still there, the fallback to polling and restarting a dead observer all run on the
engine's ``WatchThread``, which reports back through queued signals. watchdog's threads
only record paths in a bounded ``PendingChanges`` and send one wake-up at a time; the GUI
thread restarts a single-shot timer on each wake-up, so a burst (copying 1,000 files
in) becomes one indexing job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from PySide6.QtCore import QObject, QTimer, Signal

from desktop_app.engine.watching import (
    MAX_PENDING,
    POLLING,
    ROOT_CHECK_S,
    PendingChanges,
    WatchReport,
    WatchThread,
)

log = logging.getLogger(__name__)

DEBOUNCE_MS = 1500
MAX_DEFER_S = 10.0  # a folder that never stops changing is still indexed this often


class FolderWatcher(QObject):
    """Emits ``changed(list[str])`` for debounced bursts of changes under the folders,
    ``root_returned(str)`` when an offline folder is reachable again, ``root_offline(str)``
    when one vanished (its entries stay), and ``notice(str)`` with a sentence for the
    status bar when a folder is polled instead of watched or a watcher was restarted."""

    changed = Signal(list)
    root_returned = Signal(str)
    root_offline = Signal(str)
    watch_started = Signal(str)  # a root is watched now: reconcile what changed before
    notice = Signal(str)
    _wake = Signal()  # from watchdog's threads: paths are pending
    _report = Signal(object)  # WatchReport, from the watch thread

    def __init__(
        self,
        extensions: Iterable[str],
        parent: QObject | None = None,
        *,
        check_interval: float = ROOT_CHECK_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        super().__init__(parent)
        self._extensions = list(extensions)
        self._check_interval = check_interval
        self.pending = PendingChanges(max_pending)
        self._thread: WatchThread | None = None
        self._roots: list[str] = []
        # the watch thread's view, mirrored here from its reports (GUI thread only)
        self.modes: dict[str, str] = {}
        self._offline: set[str] = set()
        self._first_pending = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._flush)
        self._wake.connect(self._woken)
        self._report.connect(self._on_report)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = WatchThread(
            self._extensions,
            self.pending,
            self._wake.emit,
            self._report.emit,
            check_interval=self._check_interval,
        )
        self._thread.start()
        if self._roots:
            self._thread.set_roots(self._roots)

    def stop(self) -> None:
        self._timer.stop()
        if self._thread is not None:
            if not self._thread.shutdown():
                log.warning("the folder watcher did not stop in time (a hung share?)")
            self._thread = None

    def set_roots(self, roots: Iterable[str]) -> None:
        """Watch exactly these folders; returns at once (the watch thread schedules)."""
        self._roots = sorted(set(roots))
        for root in list(self.modes):
            if root not in self._roots:
                del self.modes[root]
        self._offline &= set(self._roots)
        if self._thread is not None:
            self._thread.set_roots(self._roots)

    def check_roots(self) -> None:
        """Ask for a check now (the watch thread also checks every 30 s): vanished roots
        go offline, returned ones are watched again and reconciled, dead watchers restart."""
        if self._thread is not None:
            self._thread.check_now()

    @property
    def offline(self) -> set[str]:
        return set(self._offline)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- reports, on the GUI thread ------------------------------------------------------
    def _on_report(self, report: WatchReport) -> None:
        if report.root not in self._roots:
            return  # a folder removed meanwhile
        if report.kind == "watching":
            if report.root not in self._offline:  # a returning root gets root_returned
                # changes made before the watch existed (it is set up on another thread,
                # after the folder's first scan) are caught by one more scan
                self.watch_started.emit(report.root)
            self._offline.discard(report.root)
            self.modes[report.root] = report.mode
            if report.mode == POLLING:
                self.notice.emit(
                    f"{report.root} is checked for changes every few seconds instead of "
                    f"watched: {report.reason}"
                )
        elif report.kind == "offline":
            self.modes.pop(report.root, None)
            self._offline.add(report.root)
            self.root_offline.emit(report.root)
        elif report.kind == "returned":
            self.root_returned.emit(report.root)
        elif report.kind == "restarted":
            self.modes.pop(report.root, None)  # until its new watch reports in
            self.notice.emit(f"The folder watcher for {report.root} stopped and was restarted")

    def _woken(self) -> None:
        self.pending.acknowledge()
        now = time.monotonic()
        if not self._timer.isActive():
            self._first_pending = now
        if now - self._first_pending < MAX_DEFER_S:
            self._timer.start()  # restart: wait for the burst to settle

    def _flush(self) -> None:
        paths = self.pending.take()
        if paths:
            self.changed.emit(paths)
