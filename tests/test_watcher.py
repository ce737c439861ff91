"""Folder watching under faults: a hanging file system, a vanished folder, a burst of
10,000 files, the inotify limit, a network share and a dead watcher thread. No encoder:
these drive ``FolderWatcher`` and the engine's watch thread directly."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from watchdog.events import FileCreatedEvent
from watchdog.observers.api import BaseObserver

from desktop_app.engine import watching
from desktop_app.engine.scanner import is_within
from desktop_app.engine.watching import (
    Forwarder,
    PendingChanges,
    filesystem_type,
    is_network_fs,
)
from desktop_app.ui.watcher import FolderWatcher

TIMEOUT = 30_000
EXTENSIONS = ["jpg", "png"]


@pytest.fixture
def watcher(qtbot) -> Iterator[FolderWatcher]:  # type: ignore[no-untyped-def]
    w = FolderWatcher(EXTENSIONS)
    yield w
    w.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    return folder


def _fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watching, "POLL_INTERVAL_S", 0.2)


def _ticking(qtbot) -> tuple[QTimer, list[int]]:  # type: ignore[no-untyped-def]
    """A GUI-thread timer: it only fires while the GUI thread runs its event loop."""
    ticks: list[int] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    return timer, ticks


def test_scheduling_a_slow_tree_never_blocks_the_gui_thread(
    watcher: FolderWatcher, root: Path, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()
    called_on: list[threading.Thread] = []
    schedule = BaseObserver.schedule

    def slow_schedule(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        called_on.append(threading.current_thread())
        release.wait(20)  # a share that takes its time listing the tree
        return schedule(self, *args, **kwargs)

    monkeypatch.setattr(BaseObserver, "schedule", slow_schedule)
    watcher.start()
    watcher.set_roots([str(root)])  # returns although scheduling hangs
    timer, ticks = _ticking(qtbot)
    try:
        qtbot.waitUntil(lambda: len(ticks) >= 5 and called_on != [], timeout=TIMEOUT)
        assert not release.is_set() and str(root) not in watcher.modes
        assert called_on[0] is not threading.main_thread()
    finally:
        release.set()
        timer.stop()
    qtbot.waitUntil(lambda: watcher.modes.get(str(root)) == "native", timeout=TIMEOUT)


def test_checking_roots_on_a_hung_share_never_blocks_the_gui_thread(
    watcher: FolderWatcher, root: Path, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    watcher.start()
    watcher.set_roots([str(root)])
    qtbot.waitUntil(lambda: str(root) in watcher.modes, timeout=TIMEOUT)
    release = threading.Event()
    isdir = os.path.isdir
    hung: list[threading.Thread] = []

    def slow_isdir(path):  # type: ignore[no-untyped-def]
        if str(path) == str(root):
            hung.append(threading.current_thread())
            release.wait(20)
        return isdir(path)

    monkeypatch.setattr(watching.os.path, "isdir", slow_isdir)
    watcher.check_roots()
    timer, ticks = _ticking(qtbot)
    try:
        qtbot.waitUntil(lambda: hung != [] and len(ticks) >= 5, timeout=TIMEOUT)
        assert threading.main_thread() not in hung
    finally:
        release.set()
        timer.stop()


def test_a_vanished_folder_goes_offline_and_is_reconciled_on_return(
    watcher: FolderWatcher, root: Path, qtbot, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    watcher.start()
    watcher.set_roots([str(root)])
    qtbot.waitUntil(lambda: str(root) in watcher.modes, timeout=TIMEOUT)
    changed: list[list[str]] = []
    watcher.changed.connect(changed.append)
    away = tmp_path / "unplugged"
    with qtbot.waitSignal(watcher.root_offline, timeout=TIMEOUT) as gone:
        root.rename(away)  # the drive is unplugged: its files are not deleted
        watcher.check_roots()
    assert gone.args == [str(root)] and watcher.offline == {str(root)}
    with qtbot.waitSignal(watcher.root_returned, timeout=TIMEOUT) as back:
        away.rename(root)
        watcher.check_roots()
    assert back.args == [str(root)] and watcher.offline == set()
    assert watcher.modes[str(root)] == "native"
    # watched again: a new file is reported
    with qtbot.waitSignal(watcher.changed, timeout=TIMEOUT):
        (root / "new.jpg").write_bytes(b"x")
    assert any(str(root / "new.jpg") in paths for paths in changed)


def test_a_burst_of_10000_files_is_absorbed_with_bounded_memory(qtbot, root: Path) -> None:  # type: ignore[no-untyped-def]
    watcher = FolderWatcher(EXTENSIONS, max_pending=500)
    wakes: list[int] = []

    def wake() -> None:
        wakes.append(1)
        watcher._wake.emit()

    forwarder = Forwarder(str(root), watcher.pending, wake, frozenset(EXTENSIONS), print)
    files = [str(root / f"d{i // 100:03d}" / f"img{i:05d}.jpg") for i in range(10_000)]
    sizes: list[int] = []

    def burst() -> None:  # as watchdog would: from its own thread
        for i, path in enumerate(files):
            forwarder.dispatch(FileCreatedEvent(path))
            if i % 250 == 0:
                sizes.append(len(watcher.pending))

    producer = threading.Thread(target=burst)
    producer.start()
    producer.join()
    assert max(sizes) <= 500 and len(watcher.pending) <= 500
    assert len(wakes) == 1  # one queued wake-up for the whole burst, not 10,000 signals
    with qtbot.waitSignal(watcher.changed, timeout=TIMEOUT) as got:
        pass
    paths: list[str] = got.args[0]
    assert len(paths) <= 500
    assert all(is_within(p, str(root)) for p in paths)
    assert all(any(is_within(f, p) for p in paths) for f in files)  # nothing lost
    assert len(watcher.pending) == 0
    watcher.stop()


def test_pending_changes_never_collapse_above_their_root(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    pending = PendingChanges(cap=3)
    pending.add(a, [f"{a}/x/{i}.jpg" for i in range(5)])
    pending.add(b, [f"{b}/y/z/{i}.jpg" for i in range(5)])
    taken = pending.take()
    assert len(taken) <= 3
    assert set(taken) <= {a, b, f"{a}/x", f"{b}/y", f"{b}/y/z"}
    assert any(is_within(p, a) for p in taken) and any(is_within(p, b) for p in taken)


def test_the_inotify_watch_limit_falls_back_to_polling_and_says_so(
    watcher: FolderWatcher, root: Path, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _fast_poll(monkeypatch)

    def limit_reached(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watching.Observer, "schedule", limit_reached)
    notices: list[str] = []
    watcher.notice.connect(notices.append)
    watcher.start()
    watcher.set_roots([str(root)])
    qtbot.waitUntil(lambda: watcher.modes.get(str(root)) == "polling", timeout=TIMEOUT)
    assert notices and "limit" in notices[0] and str(root) in notices[0]
    with qtbot.waitSignal(watcher.changed, timeout=TIMEOUT) as got:
        (root / "polled.jpg").write_bytes(b"x")
    assert str(root / "polled.jpg") in got.args[0]


def test_a_network_share_is_polled(
    watcher: FolderWatcher, root: Path, qtbot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _fast_poll(monkeypatch)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nnas:/photos {root} nfs4 rw,relatime 0 0\n")
    monkeypatch.setattr(watching, "MOUNTS_FILE", str(mounts))
    notices: list[str] = []
    watcher.notice.connect(notices.append)
    watcher.start()
    watcher.set_roots([str(root)])
    qtbot.waitUntil(lambda: watcher.modes.get(str(root)) == "polling", timeout=TIMEOUT)
    assert "nfs4" in notices[0]


def test_mount_types_are_read_from_the_longest_mount_point(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        "host:/ /mnt/my\\040share fuse.sshfs rw 0 0\n"
        "//srv/x /mnt/smb cifs rw 0 0\n"
    )
    assert filesystem_type("/home/me/photos", str(mounts)) == "ext4"
    assert filesystem_type("/mnt/my share/2024", str(mounts)) == "fuse.sshfs"
    assert filesystem_type("/mnt/smbx", str(mounts)) == "ext4"  # a prefix is not a parent
    assert filesystem_type("/x", str(tmp_path / "missing")) == ""
    assert all(is_network_fs(t) for t in ("nfs", "cifs", "smb3", "sshfs", "fuse.sshfs"))
    assert not any(is_network_fs(t) for t in ("ext4", "btrfs", "tmpfs", "xfs"))


def test_a_dead_watcher_thread_is_restarted(watcher: FolderWatcher, root: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    watcher.start()
    watcher.set_roots([str(root)])
    qtbot.waitUntil(lambda: watcher.modes.get(str(root)) == "native", timeout=TIMEOUT)
    thread = watcher._thread
    assert thread is not None and thread._native is not None
    dead = thread._native
    dead.stop()  # as if it had crashed: its thread ends
    dead.join(5)
    assert not dead.is_alive()
    with qtbot.waitSignal(watcher.notice, timeout=TIMEOUT) as note:
        watcher.check_roots()
    assert "restarted" in note.args[0]
    qtbot.waitUntil(lambda: watcher.modes.get(str(root)) == "native", timeout=TIMEOUT)
    assert thread._native is not None and thread._native is not dead
    with qtbot.waitSignal(watcher.changed, timeout=TIMEOUT) as got:
        (root / "after.jpg").write_bytes(b"x")
    assert str(root / "after.jpg") in got.args[0]


def test_stop_ends_the_watch_thread(watcher: FolderWatcher, root: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    watcher.start()
    watcher.set_roots([str(root)])
    qtbot.waitUntil(lambda: str(root) in watcher.modes, timeout=TIMEOUT)
    thread = watcher._thread
    watcher.stop()
    assert thread is not None and not thread.is_alive() and not watcher.running


def test_pending_changes_in_many_folders_fold_up_to_the_cap(tmp_path: Path) -> None:
    root = str(tmp_path)
    pending = PendingChanges(cap=3)
    # one file in each of 5 folders: folding to the folders alone does not get under the cap
    pending.add(root, [f"{root}/a/{d}/x.jpg" for d in "vwxyz"])
    taken = pending.take()
    assert taken == [f"{root}/a"]
