"""Shared fixtures. Every test runs with the app's directories under tmp_path, Qt on the
offscreen platform, and fails if it leaves a thread running."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.engine.settings import HISTOGRAM_MODEL, OFFLINE_MODEL

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
PHOTOS = sorted((FIXTURES / "photos").glob("*.jpg"))

# Two tiers. The fast one runs every behaviour with the ``histogram`` encoder (colour
# layout, no torch: deterministic vectors in microseconds); the slow one (``-m slow``)
# runs the behaviours that a real model can change with efficientnet-lite0 as well.
FAST_MODEL = HISTOGRAM_MODEL
REAL_MODEL = OFFLINE_MODEL
ENCODERS = [FAST_MODEL, pytest.param(REAL_MODEL, marks=pytest.mark.slow, id="real")]


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "app-home"
    monkeypatch.setenv("DESKTOP_APP_HOME", str(home))
    return home


@pytest.fixture(autouse=True, scope="session")
def shared_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ONNX export of each model for the whole run (an export takes seconds); the
    tests of the cache itself pass their own folder."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    before = os.environ.get("DESKTOP_APP_ONNX_CACHE")
    os.environ["DESKTOP_APP_ONNX_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("DESKTOP_APP_ONNX_CACHE", None)
    else:
        os.environ["DESKTOP_APP_ONNX_CACHE"] = before


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = 5.0
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        extra = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not extra:
            return
        time.sleep(0.05)
    pytest.fail(f"test left threads running: {[t.name for t in extra]}")


@pytest.fixture(autouse=True)
def no_qt_work_left_behind(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """For Qt tests (napari's dangling-thread checks): fail a test that leaves a QThread
    running, QThreadPool work unfinished or a QTimer active. ``threading.enumerate()``
    does not see a QThread, so the plain thread check above would miss them."""
    if "qtbot" not in request.fixturenames:
        yield
        return
    import weakref

    from PySide6.QtCore import QThread, QThreadPool, QTimer

    threads: weakref.WeakSet[QThread] = weakref.WeakSet()
    timers: weakref.WeakSet[QTimer] = weakref.WeakSet()
    pools: weakref.WeakSet[QThreadPool] = weakref.WeakSet()
    thread_start, timer_start, pool_start = QThread.start, QTimer.start, QThreadPool.start

    def start_thread(self: QThread, *args: object) -> None:
        threads.add(self)
        thread_start(self, *args)

    def start_timer(self: QTimer, *args: object) -> None:
        timers.add(self)
        timer_start(self, *args)

    def start_pool(self: QThreadPool, *args: object, **kwargs: object) -> None:
        pools.add(self)
        pool_start(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", start_thread)
    monkeypatch.setattr(QTimer, "start", start_timer)
    monkeypatch.setattr(QThreadPool, "start", start_pool)
    yield
    problems = []
    for thread in list(threads):
        try:
            if thread.isRunning():
                problems.append(f"QThread {thread.objectName() or thread!r} still running")
        except RuntimeError:  # its C++ object is gone: it cannot be running
            pass
    for pool in list(pools):
        try:
            if pool.activeThreadCount():
                problems.append(f"{pool.activeThreadCount()} QThreadPool tasks still running")
        except RuntimeError:
            pass
    for timer in list(timers):
        try:
            if timer.isActive():
                problems.append(f"QTimer {timer.objectName() or timer!r} still active")
        except RuntimeError:
            pass
    if problems:
        pytest.fail("test left Qt work behind: " + "; ".join(problems))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 40 real photos (copies, free to modify)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in PHOTOS:
        shutil.copy2(p, folder / p.name)
    return folder


@pytest.fixture(params=ENCODERS)
def model(request: pytest.FixtureRequest) -> str:
    """The encoder a test runs with: the fast one, and the real one in the slow tier."""
    return str(request.param)


@pytest.fixture
def lib(app_home: Path) -> Iterator[object]:
    """A library on the fast encoder, for tests about storage, faults and metadata."""
    from desktop_app.engine.library import Library

    library = Library.open(model=HISTOGRAM_MODEL)
    yield library
    library.close()


@pytest.fixture
def library(app_home: Path, model: str) -> Iterator[object]:
    from desktop_app.engine.library import Library

    lib = Library.open(model=model)
    yield lib
    lib.close()


def run_index(lib, paths=()):  # type: ignore[no-untyped-def]
    """Index to completion; return the summary."""
    summary = None
    for progress in lib.index(list(paths)):
        summary = progress.summary or summary
    assert summary is not None
    return summary


# -- the window, shared by the window test modules (each defines its own ``settings``) --
WINDOW_TIMEOUT = 240_000  # generous: a loaded CI machine may be slow; a pass takes seconds


@pytest.fixture
def window(qtbot, settings) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The real window on a library with ``settings``, its encoder loaded."""
    from desktop_app.engine.library import Library
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.ui.main_window import MainWindow

    lib = Library(resolve_dirs(), settings)
    win = MainWindow(lib)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(
        lambda: win.status_bar.encoder_label.text().startswith(settings.model),
        timeout=WINDOW_TIMEOUT,
    )
    yield win
    win.shutdown()
    lib.close()


@pytest.fixture
def indexed(window, photos: Path, qtbot) -> Path:  # type: ignore[no-untyped-def]
    """The 40 photos added to the window's library and indexed."""
    window.add_folder(str(photos))
    qtbot.waitUntil(lambda: files_indexed(window) == 40, timeout=WINDOW_TIMEOUT)
    return photos


def files_indexed(window) -> int | None:  # type: ignore[no-untyped-def]
    """The image count of the worker's latest status; None before the first one."""
    return window.last_status.files if window.last_status else None
