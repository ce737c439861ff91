"""Watching library folders for changes, without Qt and off the caller's thread.

Everything that touches the file system lives on one background thread,
:class:`WatchThread`: scheduling a recursive watch (watchdog walks the whole tree to
add its inotify watches: 0.2 s for 5,000 local folders, unbounded on a hung share), the
periodic check that each root is still there, the fallback to polling, and restarting
an observer whose thread died. Callers (the window's GUI thread) only post commands to
its queue and hear back through the ``report`` callback, which runs on the watch thread
and must only hand the report on (the Qt layer emits a queued signal).

watchdog's own threads (the observers' emitters and dispatchers) call the event handler:
it only records paths in :class:`PendingChanges`, a lock-protected set with a cap. A
burst of 10,000 new files costs a bounded amount of memory: beyond the cap, pending
paths collapse to their folders (never above their library folder), which the indexer
rescans as a whole.

Fallback to polling: a root on a network file system (NFS, SMB/CIFS, sshfs, any FUSE
mount: inotify does not see changes made by other machines), or one whose native watch
fails (the inotify watch or instance limit: ENOSPC, EMFILE), is watched by watchdog's
PollingObserver instead, and the report says why.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from desktop_app.engine.scanner import is_image_name, is_within

log = logging.getLogger(__name__)

ROOT_CHECK_S = 30.0  # how often each root's presence and the observers' health is checked
POLL_INTERVAL_S = 5.0  # a polled root is walked this often (a share: keep the load low)
MAX_PENDING = 2000  # pending changed paths beyond which they collapse to their folders
MOUNTS_FILE = "/proc/mounts"
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "9p", "afs", "ceph", "glusterfs"}
)
LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EMFILE, errno.ENFILE})

NATIVE, POLLING = "native", "polling"


@dataclass(frozen=True)
class WatchReport:
    """What the watch thread tells its owner. ``kind`` is one of ``watching`` (``mode``
    says native or polling, ``reason`` why polling), ``offline``, ``returned`` (an
    offline root is reachable and watched again: reconcile it), ``restarted`` (a dead
    observer thread was replaced) or ``root_gone`` (events say the root itself went)."""

    kind: str
    root: str
    mode: str = ""
    reason: str = ""


# -- mounts ------------------------------------------------------------------------------
def filesystem_type(path: str, mounts_file: str | None = None) -> str:
    """The type of the file system ``path`` is on ("" when unknown), from /proc/mounts:
    the entry with the longest mount point containing the path."""
    try:
        with open(mounts_file or MOUNTS_FILE, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ""  # not Linux, or no /proc: assume local
    best, fstype = "", ""
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _unescape_mount(parts[1])
        if is_within(path, point) and len(point) > len(best):
            best, fstype = point, parts[2]
    return fstype


def _unescape_mount(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes (\040 ...)
    if "\\" not in field:
        return field
    return field.encode("latin-1", "backslashreplace").decode("unicode_escape")


def is_network_fs(fstype: str) -> bool:
    return fstype in NETWORK_FS or fstype.startswith("fuse.") or fstype == "fuse"


# -- pending changes ---------------------------------------------------------------------
class PendingChanges:
    """Changed paths waiting to be indexed, each with the root it belongs to.

    Thread-safe: watchdog's threads add, the owner takes. Bounded: once more than
    ``cap`` paths are pending, every path is replaced by its folder (a library root stays
    itself), repeatedly, until at most ``cap`` remain or only roots are left.
    """

    def __init__(self, cap: int = MAX_PENDING) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._paths: dict[str, str] = {}  # path -> its root
        self._woken = False
        self.collapses = 0

    def add(self, root: str, paths: Iterable[str]) -> bool:
        """Record paths; True when the owner should be told (no wake-up is in flight)."""
        with self._lock:
            for p in paths:
                self._paths[p] = root
            if len(self._paths) > self.cap:
                self._collapse()
            wake, self._woken = not self._woken, True
            return wake

    def acknowledge(self) -> None:
        """The owner saw the wake-up: the next add wakes it again."""
        with self._lock:
            self._woken = False

    def take(self) -> list[str]:
        with self._lock:
            paths = sorted(self._paths)
            self._paths.clear()
            return paths

    def __len__(self) -> int:
        with self._lock:
            return len(self._paths)

    def _collapse(self) -> None:
        self.collapses += 1
        while len(self._paths) > self.cap:
            folded: dict[str, str] = {}
            for path, root in self._paths.items():
                parent = os.path.dirname(path) if path != root else path
                folded[parent if is_within(parent, root) else root] = root
            if folded.keys() == self._paths.keys():
                break  # only roots left: nothing coarser exists
            # a folder now pending covers the paths below it
            self._paths = {
                p: r for p, r in folded.items() if next(_ancestors(p, r, folded), None) is None
            }


def _ancestors(path: str, root: str, pending: dict[str, str]) -> Iterator[str]:
    parent = path
    while parent != root:
        up = os.path.dirname(parent)
        if up == parent or not is_within(up, root):
            return
        parent = up
        if parent in pending:
            yield parent


# -- watchdog's side ---------------------------------------------------------------------
class Forwarder(FileSystemEventHandler):
    """Runs on watchdog's threads: records relevant paths, wakes the owner, nothing else."""

    def __init__(
        self,
        root: str,
        pending: PendingChanges,
        wake: Callable[[], None],
        extensions: frozenset[str],
        root_gone: Callable[[str], None],
    ) -> None:
        self.root = root
        self._pending = pending
        self._wake = wake
        self._extensions = extensions
        self._root_gone = root_gone

    def _relevant(self, path: str, is_dir: bool) -> bool:
        return is_dir or is_image_name(os.path.basename(path), self._extensions)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return  # its files report themselves; rescanning the folder would be waste
        src = os.fsdecode(event.src_path)
        if src == self.root and event.event_type in ("deleted", "moved"):
            # an unmounted drive or a removed folder: check the root, never index it away
            self._root_gone(self.root)
            return
        paths = [src]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        wanted = [p for p in paths if self._relevant(p, event.is_directory)]
        if wanted and self._pending.add(self.root, wanted):
            self._wake()


# -- the watch thread --------------------------------------------------------------------
@dataclass
class _Watch:
    observer: BaseObserver
    watch: ObservedWatch
    mode: str


class WatchThread(threading.Thread):
    """Owns the observers and every file-system call of watching. Commands arrive on a
    queue; ``report`` is called on this thread with a :class:`WatchReport`."""

    def __init__(
        self,
        extensions: Iterable[str],
        pending: PendingChanges,
        wake: Callable[[], None],
        report: Callable[[WatchReport], None],
        *,
        check_interval: float = ROOT_CHECK_S,
        poll_interval: float | None = None,
    ) -> None:
        # a daemon: a hung network share must never keep the app from quitting
        super().__init__(name="folder-watch", daemon=True)
        self._extensions = frozenset(e.lower() for e in extensions)
        self.pending = pending
        self._wake = wake
        self._report = report
        self.check_interval = check_interval
        self.poll_interval = POLL_INTERVAL_S if poll_interval is None else poll_interval
        self._commands: queue.Queue[tuple[str, object]] = queue.Queue()
        # owned by this thread alone
        self._native: BaseObserver | None = None
        self._poller: BaseObserver | None = None
        self._watches: dict[str, _Watch] = {}
        self._offline: set[str] = set()
        self._wanted: set[str] = set()

    # -- any thread ------------------------------------------------------------------
    def set_roots(self, roots: Iterable[str]) -> None:
        self._commands.put(("roots", frozenset(roots)))

    def check_now(self) -> None:
        self._commands.put(("check", None))

    def shutdown(self, timeout: float = 10.0) -> bool:
        self._commands.put(("stop", None))
        if self.is_alive():
            self.join(timeout)
        return not self.is_alive()

    # -- this thread -------------------------------------------------------------------
    def run(self) -> None:
        next_check = time.monotonic() + self.check_interval
        try:
            while True:
                try:
                    command, arg = self._commands.get(
                        timeout=max(0.0, next_check - time.monotonic())
                    )
                except queue.Empty:
                    command, arg = "check", None
                if command == "stop":
                    return
                try:
                    if command == "roots":
                        self._set_roots(arg)  # type: ignore[arg-type]
                    elif command == "check":
                        self._check()
                        next_check = time.monotonic() + self.check_interval
                except Exception:  # the thread boundary: keep watching the other roots
                    log.exception("folder watching: %s failed", command)
        finally:
            self._stop_observers()

    def _set_roots(self, wanted: frozenset[str]) -> None:
        self._wanted = set(wanted)
        for root in list(self._watches):
            if root not in wanted:
                self._unwatch(root)
        self._offline &= self._wanted
        for root in sorted(self._wanted - set(self._watches) - self._offline):
            self._watch(root)

    def _observer(self, mode: str) -> BaseObserver:
        if mode == NATIVE:
            if self._native is None:
                self._native = Observer()
                self._native.daemon = True
                self._native.start()
            return self._native
        if self._poller is None:
            self._poller = PollingObserver(timeout=self.poll_interval)
            self._poller.daemon = True
            self._poller.start()
        return self._poller

    def _watch(self, root: str) -> bool:
        if not os.path.isdir(root):
            self._go_offline(root)
            return False
        handler = Forwarder(root, self.pending, self._wake, self._extensions, self._root_gone)
        fstype = filesystem_type(root)
        mode, reason = NATIVE, ""
        if is_network_fs(fstype):
            mode, reason = POLLING, f"on a network file system ({fstype})"
        try:
            watch = self._observer(mode).schedule(handler, root, recursive=True)
        except OSError as exc:
            if mode == POLLING:
                log.warning("cannot watch %s: %s", root, exc)
                self._go_offline(root)
                return False
            reason = _fallback_reason(exc)
            log.warning("cannot watch %s natively (%s): polling it", root, exc)
            mode = POLLING
            try:
                watch = self._observer(mode).schedule(handler, root, recursive=True)
            except OSError as exc2:
                log.warning("cannot poll %s: %s", root, exc2)
                self._go_offline(root)
                return False
        self._watches[root] = _Watch(self._observer(mode), watch, mode)
        self._offline.discard(root)
        self._report(WatchReport("watching", root, mode, reason))
        return True

    def _unwatch(self, root: str) -> None:
        w = self._watches.pop(root, None)
        if w is None:
            return
        try:
            w.observer.unschedule(w.watch)
        except Exception:  # a watch on a vanished folder may be half torn down already
            log.debug("unscheduling %s failed", root, exc_info=True)

    def _go_offline(self, root: str) -> None:
        self._unwatch(root)
        if root not in self._offline:
            self._offline.add(root)
            self._report(WatchReport("offline", root))

    def _root_gone(self, root: str) -> None:  # watchdog's thread: only post a command
        self._commands.put(("check", None))

    def _check(self) -> None:
        """Restart dead observers, take vanished roots offline, watch returned ones."""
        self._restart_dead()
        for root in list(self._watches):
            if not os.path.isdir(root):
                self._go_offline(root)
        for root in sorted(self._offline & self._wanted):
            if os.path.isdir(root) and self._watch(root):
                self._report(WatchReport("returned", root, self._watches[root].mode))

    def _restart_dead(self) -> None:
        for mode in (NATIVE, POLLING):
            observer = self._native if mode == NATIVE else self._poller
            if observer is None:
                continue
            roots = [r for r, w in self._watches.items() if w.observer is observer]
            alive = {e.watch for e in observer.emitters if e.is_alive()}
            if observer.is_alive():
                # an emitter that died alone (its folder briefly gone): re-watch its root
                dead = [r for r in roots if self._watches[r].watch not in alive]
            else:
                log.warning("the %s folder watcher stopped; restarting it", mode)
                _stop(observer)
                if mode == NATIVE:
                    self._native = None
                else:
                    self._poller = None
                dead = roots
            for root in dead:
                self._unwatch(root)
                self._report(WatchReport("restarted", root, mode))
                self._watch(root)

    def _stop_observers(self) -> None:
        for observer in (self._native, self._poller):
            if observer is not None:
                _stop(observer)
        self._native = self._poller = None
        self._watches.clear()


def _stop(observer: BaseObserver) -> None:
    try:
        observer.unschedule_all()
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except Exception:
        log.debug("stopping an observer failed", exc_info=True)


def _fallback_reason(exc: OSError) -> str:
    if exc.errno in LIMIT_ERRNOS:
        return (
            "the system's limit on watched folders is reached (raise fs.inotify.max_user_watches)"
        )
    return f"native watching failed ({exc.strerror or exc})"
