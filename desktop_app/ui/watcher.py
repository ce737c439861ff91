"""Live folder watching with watchdog.

watchdog calls back on its own thread: the handler only forwards paths (through a
queued Qt signal); the GUI thread collects them and a single-shot timer turns a burst
(copying 1,000 files in) into one indexing job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from PySide6.QtCore import QObject, QTimer, Signal
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from desktop_app.engine.scanner import is_image_name

log = logging.getLogger(__name__)

DEBOUNCE_MS = 1500
ROOT_CHECK_MS = 30_000


class _Forwarder(FileSystemEventHandler):
    def __init__(self, emit: object, extensions: frozenset[str]) -> None:
        self._emit = emit
        self._extensions = extensions

    def _relevant(self, path: str, is_dir: bool) -> bool:
        return is_dir or is_image_name(os.path.basename(path), self._extensions)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return  # its files report themselves; rescanning the folder would be waste
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        wanted = [p for p in paths if self._relevant(p, event.is_directory)]
        if wanted:
            self._emit(wanted)  # type: ignore[operator]


class FolderWatcher(QObject):
    """Emits ``changed(list[str])`` for debounced bursts of changes under the folders,
    and ``root_returned(str)`` when an offline folder is reachable again."""

    changed = Signal(list)
    root_returned = Signal(str)
    _forward = Signal(list)  # from watchdog's thread to ours

    def __init__(self, extensions: Iterable[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._extensions = frozenset(e.lower() for e in extensions)
        self._observer = Observer()
        self._observer.daemon = True
        self._watches: dict[str, object] = {}
        self._offline: set[str] = set()
        self._pending: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._flush)
        self._root_timer = QTimer(self)
        self._root_timer.setInterval(ROOT_CHECK_MS)
        self._root_timer.timeout.connect(self.check_roots)
        self._forward.connect(self._collect)
        self._started = False

    def start(self) -> None:
        self._observer.start()
        self._root_timer.start()
        self._started = True

    def stop(self) -> None:
        self._timer.stop()
        self._root_timer.stop()
        if self._started:
            self._observer.unschedule_all()
            self._observer.stop()
            self._observer.join(timeout=5)
            self._started = False

    def set_roots(self, roots: Iterable[str]) -> None:
        wanted = set(roots)
        for root in list(self._watches):
            if root not in wanted:
                self._observer.unschedule(self._watches.pop(root))  # type: ignore[arg-type]
        self._offline &= wanted
        for root in wanted - set(self._watches):
            self._watch(root)

    @property
    def offline(self) -> set[str]:
        return set(self._offline)

    def _watch(self, root: str) -> bool:
        if not os.path.isdir(root):
            self._offline.add(root)
            return False
        try:
            handler = _Forwarder(self._forward.emit, self._extensions)
            self._watches[root] = self._observer.schedule(handler, root, recursive=True)
            self._offline.discard(root)
            return True
        except OSError as exc:  # e.g. inotify watch limit reached
            log.warning("cannot watch %s: %s", root, exc)
            self._offline.add(root)
            return False

    def check_roots(self) -> None:
        """Offline folders that came back are watched again and reconciled; watched ones
        that vanished go offline (their entries stay in the index)."""
        for root in list(self._watches):
            if not os.path.isdir(root):
                self._observer.unschedule(self._watches.pop(root))  # type: ignore[arg-type]
                self._offline.add(root)
        for root in list(self._offline):
            if os.path.isdir(root) and self._watch(root):
                self.root_returned.emit(root)

    def _collect(self, paths: list[str]) -> None:
        self._pending.update(paths)
        self._timer.start()  # restart: wait for the burst to settle

    def _flush(self) -> None:
        if self._pending:
            paths = sorted(self._pending)
            self._pending.clear()
            self.changed.emit(paths)
