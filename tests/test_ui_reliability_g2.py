"""The window under faults: results that follow the library after files are renamed or
deleted, and one window per data dir (a second launch hands over its query)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.engine.library import Library
from desktop_app.engine.settings import Settings
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.results_model import Role

from .conftest import FAST_MODEL, files_indexed

TIMEOUT = 240_000


@pytest.fixture
def settings(app_home: Path) -> Settings:
    s = Settings(model=FAST_MODEL)
    s.save(app_home / "config" / "settings.json")
    return s


def _row_of(window: MainWindow, path: str) -> int:
    return [r.path for r in window.model.results()].index(path)


def test_results_on_screen_follow_a_rename_and_a_delete(
    window: MainWindow, indexed: Path, qtbot
) -> None:  # type: ignore[no-untyped-def]
    query = sorted(indexed.glob("*.jpg"))[0]
    with qtbot.waitSignal(window.searcher.completed, timeout=TIMEOUT):
        window.search_file(query)
    shown = window.model.results()
    renamed, deleted = Path(shown[1].path), Path(shown[2].path)
    renamed_row, deleted_row = _row_of(window, str(renamed)), _row_of(window, str(deleted))
    new_path = renamed.with_name("renamed " + renamed.name)
    renamed.rename(new_path)  # in the watched folder, as a file manager would
    deleted.unlink()

    def followed() -> bool:
        return window.model.result(renamed_row).path == str(new_path) and window.model.is_gone(
            deleted_row
        )

    qtbot.waitUntil(followed, timeout=TIMEOUT)
    model = window.model
    assert model.rowCount() == len(shown)  # nothing vanished from under the user
    assert model.data(model.index(deleted_row), Role.Gone) is True
    assert model.data(model.index(renamed_row), Role.Gone) is False
    assert "Deleted" in model.data(model.index(deleted_row), 3)  # the tooltip says so
    gone_menu = window.view.build_menu(deleted_row)
    assert not gone_menu.defaultAction().isEnabled()  # Find similar: nothing to search by
    menu = window.view.build_menu(renamed_row)
    assert menu.defaultAction().isEnabled()
    # Find similar on the renamed result works: it finds itself under its new name
    with qtbot.waitSignal(window.searcher.completed, timeout=TIMEOUT):
        menu.defaultAction().trigger()
    assert window.model.result(0).path == str(new_path)
    assert not window.model.is_gone(0)


def test_followed_results_keep_what_the_search_found() -> None:
    """Following the library refreshes a result's file details and nothing else: a
    verified partial match stays verified. (It used to lose its confirmation at the
    next index job, and the window then badged it "similar region".)"""
    from desktop_app.engine.catalog import FileRow
    from desktop_app.engine.search import Match, SearchResult, follow_library

    def row(path: str, fp: str) -> FileRow:
        return FileRow(path, "/r", 2048, 7, fp, 400, 300, "ok", None, "")

    class Catalog:  # what follow_library reads: a, still in place; b, renamed; c, gone
        def paths_for(self, fps: list[str]) -> dict[str, list[FileRow]]:
            return {"a": [row("/r/a.jpg", "a")], "b": [row("/r/b2.jpg", "b")]}

        def file(self, path: str) -> FileRow | None:
            return None

    shown = [
        SearchResult("/r/a.jpg", 0.9, Match.PARTIAL, (1, 2, 3, 4), "a", confirmed=True),
        SearchResult("/r/b.jpg", 0.8, Match.PARTIAL, (5, 6, 7, 8), "b", confirmed=True),
        SearchResult("/r/c.jpg", 0.7, Match.PARTIAL, (0, 0, 9, 9), "c", confirmed=True),
    ]
    here, moved, gone = follow_library(Catalog(), shown)  # type: ignore[arg-type]
    assert here is not None and moved is not None and gone is None
    assert (here.path, here.score, here.match, here.region) == (
        "/r/a.jpg",
        0.9,
        Match.PARTIAL,
        (1, 2, 3, 4),
    )
    assert here.confirmed and here.size == 2048 and (here.width, here.height) == (400, 300)
    assert (moved.path, moved.match, moved.region, moved.confirmed) == (
        "/r/b2.jpg",
        Match.PARTIAL,
        (5, 6, 7, 8),
        True,
    )


@pytest.fixture
def running(qtbot, settings: Settings) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    """A window as ``desktop-app gui`` opens it: listening for later launches."""
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.ui.app import open_window

    lib = Library(resolve_dirs(), settings)
    win, server = open_window(lib)
    qtbot.addWidget(win)
    qtbot.waitUntil(
        lambda: win.status_bar.encoder_label.text().startswith(settings.model), timeout=TIMEOUT
    )
    yield win
    server.close()
    win.shutdown()
    lib.close()


def test_a_second_launch_hands_its_image_to_the_running_window(
    running: MainWindow, photos: Path, qtbot, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from desktop_app.ui.app import run_gui

    running.add_folder(str(photos))
    qtbot.waitUntil(lambda: files_indexed(running) == 40, timeout=TIMEOUT)
    running.showMinimized()
    opened: list[object] = []
    init = Library.__init__

    def counting_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Library, "__init__", counting_init)
    image = sorted(photos.glob("*.jpg"))[5]
    assert run_gui(image=image) == 0  # returns at once: no second window, no event loop
    assert "already running" in capsys.readouterr().err
    with qtbot.waitSignal(running.searcher.completed, timeout=TIMEOUT):
        pass
    assert running.current is not None and running.current.path == str(image)
    assert running.model.result(0).path == str(image)
    assert opened == []  # never a second library (nor a second writer)
    assert not running.isMinimized()  # brought forward


def test_a_second_process_hands_its_image_to_the_running_window(
    running: MainWindow, photos: Path, qtbot
) -> None:  # type: ignore[no-untyped-def]
    image = sorted(photos.glob("*.jpg"))[3]
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop_app", "gui", str(image)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with qtbot.waitSignal(running.controller.query_described, timeout=TIMEOUT):
            pass  # the event loop runs (the server reads) while the launch hands over
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "already running; your request was handed to it" in err
    assert running.current is not None and running.current.path == str(image)


def test_an_unplugged_folder_keeps_its_photos_and_resumes_with_nothing_re_embedded(
    window: MainWindow, indexed: Path, qtbot, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    away = tmp_path / "unplugged"
    with qtbot.waitSignal(window.controller.watcher.root_offline, timeout=TIMEOUT):
        indexed.rename(away)  # the drive goes: the watcher notices its root went
        window.controller.watcher.check_roots()
    assert window.controller.roots[0]["online"] is False
    # Waits are on signals emitted on the GUI thread (or on state): a blocker on one of
    # the worker's signals can be handed a call that signal queued for an earlier,
    # already disconnected blocker (Qt delivers those): a LibraryStatus was seen to reach
    # a blocker on `finished`, and a pytest-qt slot crashed (SIGSEGV) twice in 20 runs.
    with qtbot.waitSignal(window.controller.status_changed, timeout=TIMEOUT):
        window.controller.add_folder(str(indexed))  # even a rescan asked for by hand
    assert files_indexed(window) == 40  # kept while offline
    before = window.controller.last_summary
    away.rename(indexed)
    window.controller.watcher.check_roots()

    def back() -> bool:  # the run that saw the folder back (a job queued while it was
        s = window.controller.last_summary  # away may finish first)
        return s is not None and s is not before and not s.offline

    qtbot.waitUntil(back, timeout=TIMEOUT)
    done = window.controller.last_summary
    assert done is not None and done.embedded == 0 and done.removed == 0
    qtbot.waitUntil(lambda: files_indexed(window) == 40, timeout=TIMEOUT)
    qtbot.waitUntil(
        lambda: window.controller.watcher.modes.get(str(indexed)) == "native", timeout=TIMEOUT
    )


def test_a_long_run_of_qt_calls_never_kills_the_interpreter() -> None:
    """PySide6 6.12.0 on Python < 3.12 takes a reference from None at every call that
    returns nothing; unguarded, the process aborts ("deallocating None") once they run
    out. Run more such calls than None has references, in a child process."""
    script = (
        "import sys\n"
        "import desktop_app.ui\n"
        "from PySide6.QtCore import QObject\n"
        "o = QObject()\n"
        "for _ in range(min(sys.getrefcount(None), 10**6) + 20_000):\n"
        "    o.setObjectName('x')\n"
        "print('alive')\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "alive" in proc.stdout, proc.stderr[-2000:]


def test_a_launch_racing_a_starting_window_hands_over_instead_of_failing(
    qtbot, app_home: Path, photos: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The first window holds the data-dir lock but did not listen yet when the second
    launch looked: the second waits for it instead of reporting a locked data dir."""
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.ui import app as app_module
    from desktop_app.ui.single_instance import InstanceServer, server_name

    dirs = resolve_dirs()
    first = Library(dirs, Settings(model=FAST_MODEL))  # holds the lock
    server = InstanceServer(server_name(dirs.data))
    real = app_module.hand_to_running
    calls: list[int] = []

    def not_yet_listening(*args: object) -> bool:
        calls.append(1)
        return False if len(calls) == 1 else real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(app_module, "hand_to_running", not_yet_listening)
    image = sorted(photos.glob("*.jpg"))[0]
    try:
        assert server.listen()
        with qtbot.waitSignal(server.request_received, timeout=TIMEOUT) as got:
            assert app_module.run_gui(image=image) == 0
        assert got.args == [{"image": str(image)}]
        assert "already running" in capsys.readouterr().err
        assert len(calls) >= 2
    finally:
        server.close()
        first.close()


def test_thumbnails_in_memory_stay_under_their_byte_cap(
    qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Weeks of searching show thousands of photos: decoded thumbnails must not pile up."""
    from PySide6.QtCore import QThreadPool
    from PySide6.QtGui import QImage

    from desktop_app.ui import thumbnails

    monkeypatch.setattr(thumbnails, "MEMORY_BYTES", 10 * 320 * 240 * 4)
    cache = thumbnails.ThumbnailCache(tmp_path, QThreadPool())
    for i in range(200):
        image = QImage(320, 240, QImage.Format.Format_RGB32)
        image.fill(i)
        cache._signals.loaded.emit(f"k{i}", image, None)
    assert cache.memory_bytes <= thumbnails.MEMORY_BYTES
    assert cache.get("k199", "") is not None  # the newest stay
    assert len(cache._memory) == 10
