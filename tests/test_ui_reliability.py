"""The window's reliability faults (issue 9): each test reproduces the original failure
and passes now. Fast tier with the histogram encoder; the encoder-switch crash with the
real model in the slow tier."""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QRunnable, QThread, QThreadPool, QUrl
from PySide6.QtGui import QDesktopServices
from pytestqt.qtbot import QtBot

from desktop_app.engine.errors import EncoderUnavailable
from desktop_app.engine.library import EncoderSlot, Library
from desktop_app.engine.paths import resolve_dirs
from desktop_app.engine.search import SearchResult
from desktop_app.engine.settings import HISTOGRAM_MODEL, OFFLINE_MODEL, Settings
from desktop_app.engine.store import VectorStore
from desktop_app.ui import errors
from desktop_app.ui.controller import SearchController
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.search_runner import Query
from desktop_app.ui.worker import IndexJob, IndexWorker

from .conftest import PHOTOS, run_index

TIMEOUT = 240_000  # generous for a loaded machine; a pass takes seconds


def save_settings(app_home: Path, **kw: Any) -> Settings:
    s = Settings(model=HISTOGRAM_MODEL, **kw)
    s.save(app_home / "config" / "settings.json")
    return s


@pytest.fixture
def library(app_home: Path) -> Iterator[Library]:
    lib = Library(resolve_dirs(), save_settings(app_home))
    yield lib
    lib.close()


@pytest.fixture
def few_photos(tmp_path: Path) -> Path:
    """Eight photos: enough to search, few enough to re-index many times."""
    folder = tmp_path / "few"
    folder.mkdir()
    for p in PHOTOS[:8]:
        shutil.copy2(p, folder / p.name)
    return folder


def start_controller(
    qtbot: QtBot, library: Library, pool_expiry_ms: int | None = None
) -> SearchController:
    """A started controller; ``pool_expiry_ms`` sets its pools' idle-thread expiry
    before the start (Qt's setting does not reach threads already running)."""
    c = SearchController(library)
    if pool_expiry_ms is not None:
        for pool in (c.pool, c.image_pool, c.finder_pool):
            pool.setExpiryTimeout(pool_expiry_ms)
    with qtbot.waitSignal(c.encoder_ready, timeout=TIMEOUT):
        c.start(watch=False)
    return c


@pytest.fixture
def controller(qtbot: QtBot, library: Library) -> Iterator[SearchController]:
    c = start_controller(qtbot, library)
    yield c
    c.shutdown()


def make_window(qtbot: QtBot, library: Library) -> MainWindow:
    win = MainWindow(library, watch=False)
    qtbot.addWidget(win)
    return win


def wait_encoder(qtbot: QtBot, win: MainWindow, model: str) -> None:
    label = win.status_bar.encoder_label
    qtbot.waitUntil(lambda: label.text().startswith(model), timeout=TIMEOUT)


def saved_model(library: Library) -> str:
    return Settings.load(library.dirs.settings_path).model


# -- 1: changing the encoder in Settings --------------------------------------------------


def test_settings_dialog_is_deleted_when_closed_and_never_left_to_the_collector(
    qtbot: QtBot, library: Library
) -> None:
    """The crash: the dialog was never deleteLater()ed, so Python's collector freed it
    later, on whatever thread it ran (the worker building the encoder). Now Qt deletes
    each one on the GUI thread when it closes, and the collector never runs elsewhere."""
    win = make_window(qtbot, library)
    wait_encoder(qtbot, win, HISTOGRAM_MODEL)
    for i in range(30):
        dialog = win.open_settings()
        dialog.top_k.setValue(10 + i)
        dialog.regions.setChecked(i % 2 == 0)
        dialog.accept() if i % 3 else dialog.reject()
        qtbot.waitUntil(lambda d=dialog: not shiboken6.isValid(d), timeout=5000)
    assert not gc.isenabled()  # the GUI-thread collector owns collection while it runs
    saved = Settings.load(library.dirs.settings_path)
    assert saved.top_k == 39  # the last accepted dialog's (29 % 3 != 0)
    win.shutdown()


def test_model_is_saved_only_when_the_switch_completes(qtbot: QtBot, library: Library) -> None:
    """Died mid-switch: settings.json named the new model while the catalog still had the
    old one active. Now the model is written when the re-index completes."""
    run_index(library, [PHOTOS[0].parent])
    c = SearchController(library)  # not started: the switch never gets to run
    new = replace(library.settings, model=OFFLINE_MODEL, top_k=7)
    c.apply_settings(new)
    assert c.pending_model == OFFLINE_MODEL
    assert c.settings_for_dialog().model == OFFLINE_MODEL  # shown as chosen
    saved = Settings.load(library.dirs.settings_path)
    assert (saved.model, saved.top_k) == (HISTOGRAM_MODEL, 7)  # the rest is saved at once
    assert library.catalog.get_meta("active_model") == HISTOGRAM_MODEL
    c.shutdown()  # the app "dies" here: both still name the same model


def test_start_reconciles_settings_with_the_catalogs_active_model(
    qtbot: QtBot, app_home: Path, few_photos: Path
) -> None:
    """An older app that died mid-switch left settings.json and the catalog apart: the
    catalog (it names the vectors on disk) wins at the next start."""
    with Library(resolve_dirs(), save_settings(app_home)) as lib:
        run_index(lib, [few_photos])
    Settings(model=OFFLINE_MODEL).save(app_home / "config" / "settings.json")
    lib = Library(resolve_dirs())
    try:
        assert lib.slot.spec == HISTOGRAM_MODEL
        c = start_controller(qtbot, lib)
        assert saved_model(lib) == HISTOGRAM_MODEL == c.settings.model
        c.shutdown()
    finally:
        lib.close()


def test_a_newer_switch_replaces_a_queued_older_one(qtbot: QtBot, library: Library) -> None:
    from desktop_app.ui.worker import ReindexJob

    w = IndexWorker(library)
    switched: list[str] = []
    w.model_switched.connect(switched.append)
    w.submit(ReindexJob(OFFLINE_MODEL))  # queued while the worker is not running yet
    w.submit(ReindexJob(HISTOGRAM_MODEL))
    with qtbot.waitSignal(w.model_switched, timeout=TIMEOUT):
        w.start()
    assert w.stop()
    assert switched == [HISTOGRAM_MODEL]  # efficientnet was never loaded for nothing


def test_a_failed_switch_says_so_and_keeps_the_current_encoder(
    controller: SearchController, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenSlot(EncoderSlot):
        def get(self, progress: Any = None) -> Any:
            raise EncoderUnavailable(f"cannot load {self.spec}: the file is damaged")

    monkeypatch.setattr("desktop_app.ui.worker.EncoderSlot", BrokenSlot)
    messages: list[str] = []
    controller.message.connect(lambda text, _ms: messages.append(text))
    with qtbot.waitSignal(controller.worker.switch_abandoned, timeout=TIMEOUT):
        controller.apply_settings(replace(controller.settings, model="ViT-B-32:/x/broken.pt"))
    assert messages[-1] == (
        "Switching the encoder to ViT-B-32:/x/broken.pt failed: "
        "cannot load ViT-B-32:/x/broken.pt: the file is damaged"
    )
    assert controller.pending_model is None
    assert controller.settings_for_dialog().model == HISTOGRAM_MODEL
    assert saved_model(controller.library) == HISTOGRAM_MODEL


@pytest.mark.slow
def test_switching_the_encoder_30_times_in_the_window(
    qtbot: QtBot, library: Library, few_photos: Path
) -> None:
    """Issue 9's reproduction: 5 crashes in ~25 switches. Each switch goes through the
    dialog; a search runs during every re-index and must be embedded and compared in one
    space (the query photo itself comes first, as itself)."""
    run_index(library, [few_photos])
    win = make_window(qtbot, library)
    wait_encoder(qtbot, win, HISTOGRAM_MODEL)
    c = win.controller
    query = sorted(few_photos.iterdir())[0]
    for i in range(30):
        model = OFFLINE_MODEL if i % 2 == 0 else HISTOGRAM_MODEL
        dialog = win.open_settings()
        dialog.model.setCurrentText(model)
        with qtbot.waitSignal(c.worker.model_switched, timeout=TIMEOUT):
            dialog.accept()
            qtbot.waitUntil(lambda d=dialog: not shiboken6.isValid(d), timeout=5000)
            with qtbot.waitSignal(c.searcher.completed, timeout=TIMEOUT) as got:
                c.search_file(query)  # during the re-index: the old encoder answers
        results: list[SearchResult] = got.args[1]
        assert results[0].path == str(query) and results[0].score > 0.99
        assert saved_model(library) == model == library.catalog.get_meta("active_model")
    assert win.shutdown()


# -- 3: search errors reach the window -----------------------------------------------------


def test_a_torch_error_in_a_search_reaches_the_window(
    controller: SearchController, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``except RuntimeError: pass`` swallowed CUDA out-of-memory (a RuntimeError) and
    left "Searching…" on screen."""
    described: list[str] = []
    messages: list[str] = []
    controller.query_described.connect(described.append)
    controller.message.connect(lambda text, _ms: messages.append(text))

    def out_of_memory() -> list[SearchResult]:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(controller.library, "image_stages", lambda *a, **k: [out_of_memory])
    with qtbot.waitSignal(controller.searcher.failed, timeout=TIMEOUT):
        controller.search_file(PHOTOS[0])
    assert "CUDA out of memory" in described[-1] and "Searching" not in described[-1]
    assert "CUDA out of memory" in messages[-1]


# -- 4: errors off the GUI thread ----------------------------------------------------------


class _Raises(QRunnable):
    def run(self) -> None:
        raise ValueError("boom in a pool task")


def test_an_error_escaping_a_pool_task_is_shown_on_the_gui_thread_only(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook ran on the pool thread and built a QMessageBox there."""
    built_on: list[int] = []

    class RecordingBox(errors.QMessageBox):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built_on.append(threading.get_ident())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(errors, "QMessageBox", RecordingBox)
    monkeypatch.setattr("sys.excepthook", __import__("sys").excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    reporter = errors.install_excepthook(lambda: None)
    pool = QThreadPool()
    with qtbot.waitSignal(reporter.reported, timeout=10_000):
        pool.start(_Raises())
    pool.waitForDone()
    qtbot.waitUntil(lambda: reporter.box is not None, timeout=10_000)
    assert built_on == [threading.get_ident()]  # the GUI thread's, once
    assert reporter.box is not None and "boom in a pool task" in reporter.box.detailedText()
    assert any("not the GUI's" in r.getMessage() for r in caplog.records)
    # a Python thread (watchdog's) dying goes the same way; one dialog at a time
    t = threading.Thread(target=lambda: 1 / 0, name="watcher-like")
    with qtbot.waitSignal(reporter.reported, timeout=10_000):
        t.start()
    t.join()
    qtbot.waitUntil(lambda: reporter.unshown == 1, timeout=10_000)
    assert len(built_on) == 1
    reporter.box.close()


# -- 5: one writer, one encoder per search, settings snapshots, shutdown ----------------

WRITES = ("upsert", "delete")


class RecordingStore:
    """The real store, recording which thread called each write method."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self.writes: list[tuple[str, str]] = []  # method, QThread object name

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in WRITES:
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            self.writes.append((name, QThread.currentThread().objectName()))
            return attr(*args, **kwargs)

        return write


def test_searches_never_write_and_the_worker_syncs_the_store(
    qtbot: QtBot, app_home: Path, few_photos: Path
) -> None:
    """``Library._ready()`` synced the store from the search thread the first time a
    search ran. A store that lags the catalog is now caught up by the worker alone."""
    with Library(resolve_dirs(), save_settings(app_home)) as lib:
        run_index(lib, [few_photos])
        lagging = sorted(lib.store.ids(HISTOGRAM_MODEL))[:3]
        lib.store.delete(HISTOGRAM_MODEL, lagging)  # as after a crash between the writes
    lib = Library(resolve_dirs())
    recorder = RecordingStore(lib.store)
    lib.store = recorder  # type: ignore[assignment]
    try:
        # searches first, with no worker at all: they must answer without writing
        c = SearchController(lib)
        query = sorted(few_photos.iterdir())[1]
        for _ in range(3):
            with qtbot.waitSignal(c.searcher.completed, timeout=TIMEOUT):
                c.search_file(query)
        assert recorder.writes == []
        c.shutdown()
        c = start_controller(qtbot, lib)  # the worker loads the encoder and syncs
        for _ in range(3):
            with qtbot.waitSignal(c.searcher.completed, timeout=TIMEOUT):
                c.search_file(query)
        c.shutdown()
        assert recorder.writes and {t for _m, t in recorder.writes} == {"index-worker"}
        assert lib.store.count(HISTOGRAM_MODEL) == 8
    finally:
        lib.close()


def test_a_search_embeds_and_compares_with_the_encoder_it_started_with(
    library: Library, few_photos: Path
) -> None:
    """The worker swapped the encoder after a search read the encoder id and before it
    embedded: the query was embedded by one model and compared in the other's space."""
    run_index(library, [few_photos])
    query = sorted(few_photos.iterdir())[2]
    stages = library.image_stages(query, top_k=3)  # the search starts: reads its pair
    old = library.slot
    library.slot = newer = EncoderSlot(HISTOGRAM_MODEL, library.settings)  # the swap
    results = [stage() for stage in stages][-1]
    assert results[0].path == str(query)
    assert old.loaded and not newer.loaded  # the query was embedded by the old encoder only


def test_a_job_runs_with_the_settings_it_was_submitted_with(
    qtbot: QtBot, library: Library, photos: Path
) -> None:
    """The GUI thread changed Settings while the worker read them mid-job."""
    w = IndexWorker(library)
    w.submit(IndexJob([str(photos)]))  # snapshot: every file type
    changed = library.settings
    library.settings = replace(changed, file_types=["png"])  # the GUI thread moves on
    changed.file_types.clear()  # and even an edit in place of the old object
    with qtbot.waitSignal(w.finished, timeout=TIMEOUT) as got:
        w.start()
    assert w.stop()
    assert got.args[0].embedded == 40


def test_shutdown_never_closes_the_library_under_a_running_worker(
    qtbot: QtBot, controller: SearchController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown ignored the worker's time-out and closed SQLite and Chroma under it."""
    release = threading.Event()
    entered = threading.Event()

    def stuck_index(*_a: Any, **_k: Any) -> Iterator[Any]:
        entered.set()
        release.wait(60)  # a batch that takes longer than the time-out
        yield from ()

    monkeypatch.setattr(controller.library, "index", stuck_index)
    controller.add_folder(str(PHOTOS[0].parent))
    # the worker may be busy with an earlier job first: wait for this one to be running
    qtbot.waitUntil(entered.is_set, timeout=TIMEOUT)
    try:
        assert controller.shutdown(worker_timeout_ms=200) is False
        assert not controller.safe_to_close
        assert not gc.isenabled()  # no automatic collection back while it runs
        assert controller.library.catalog.counts()["files"] == 0  # still open and usable
    finally:
        release.set()
        assert controller.worker._thread.wait(30_000)
        gc.enable()


# -- 8: silent failures --------------------------------------------------------------------


def children_of_this_process() -> list[str]:
    """(pid, state) of every child: a zombie has state Z."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me:
            out.append(f"{entry}:{fields[0]}")
    return out


@pytest.fixture
def window(qtbot: QtBot, library: Library) -> Iterator[MainWindow]:
    win = make_window(qtbot, library)
    wait_encoder(qtbot, win, HISTOGRAM_MODEL)
    yield win
    win.shutdown()


def fake_open_url(monkeypatch: pytest.MonkeyPatch, answer: bool) -> list[str]:
    opened: list[str] = []

    def open_url(url: QUrl) -> bool:
        opened.append(url.toLocalFile())
        return answer

    monkeypatch.setattr(QDesktopServices, "openUrl", open_url)
    return opened


def test_open_without_a_handler_says_so(
    window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_open_url(monkeypatch, False)
    assert window.view.files.open(str(PHOTOS[0])) is False
    assert window.status_bar.currentMessage().startswith(f"Could not open {PHOTOS[0].name}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="zombies are counted in /proc")
@pytest.mark.parametrize(
    ("command", "opened_folder"),
    [(("false", []), True), (("/nonexistent/file-manager", []), False)],
    ids=["file-manager-fails", "no-file-manager"],
)
def test_show_in_folder_falls_back_and_leaves_no_zombie(
    window: MainWindow,
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, list[str]],
    opened_folder: bool,
) -> None:
    """``dbus-send`` was never waited for (a zombie per click) and its failure unseen."""
    opened = fake_open_url(monkeypatch, opened_folder)
    files = window.view.files
    files.command = lambda _path: command
    with qtbot.waitSignal(files.revealed, timeout=10_000) as got:
        files.show_in_folder(str(PHOTOS[0]))
    assert got.args == [str(PHOTOS[0]), opened_folder]
    assert opened == [str(PHOTOS[0].parent)]  # the fallback: the parent folder
    message = window.status_bar.currentMessage()
    assert message.startswith("Could not show") if not opened_folder else message == ""
    qtbot.waitUntil(lambda: not [c for c in children_of_this_process() if c.endswith("Z")])


def test_worker_failures_say_what_failed_and_the_encoder_label_moves_on(
    qtbot: QtBot, library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bad_weights(progress: Any = None) -> Any:
        raise EncoderUnavailable("the weights file model.pt is damaged: choose another")

    monkeypatch.setattr(library.slot, "get", bad_weights)
    win = make_window(qtbot, library)
    label = win.status_bar.encoder_label
    qtbot.waitUntil(lambda: label.text() != "Loading encoder…", timeout=TIMEOUT)
    assert label.text() == "No encoder (loading failed)" and "damaged" in label.toolTip()
    assert win.status_bar.currentMessage().startswith("Loading the encoder failed: the weights")
    with qtbot.waitSignal(win.worker.failed, timeout=TIMEOUT) as got:
        win.controller.remove_folder("/not/a/library/folder")
    assert got.args[0].startswith("Removing /not/a/library/folder from the library failed:")
    win.shutdown()


def test_the_count_is_read_at_start_not_after_the_encoder_loads(
    qtbot: QtBot, app_home: Path, few_photos: Path
) -> None:
    """ "No images yet" showed while hundreds were indexed, until the encoder loaded."""
    with Library(resolve_dirs(), save_settings(app_home)) as lib:
        run_index(lib, [few_photos])
    lib = Library(resolve_dirs())
    try:
        win = make_window(qtbot, lib)
        # before the event loop ran once: the worker has reported nothing yet
        assert win.status_bar.files_label.text() == "8 images indexed"
        win.shutdown()
    finally:
        lib.close()


# -- the window's open files over many searches ------------------------------------------


CHROMA_POOL_THREAD = "sqlx-sqlite-wor"  # a connection of Chroma's SQLite pool (15-char name)
CHROMA_POOL_MAX = 10  # that pool's maximum (sqlx's default, which Chroma keeps)


def process_counts() -> tuple[int, int, int, list[str]]:
    """Open files and OS threads, less Chroma's SQLite pool; that pool's connections;
    and every file's target and thread's name (for a failure's message).

    Chroma reads through a pool of SQLite connections (sqlx), each a thread of its own
    and the database's files. It opens them as concurrent reads need them, up to its
    maximum, and closes idle ones after minutes: how many a count catches is bounded
    but depends on timing. The catalog's connections, whose leak ran the app out of
    files, are counted.
    """
    files = threads = pool = 0
    seen: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        seen.append(name)
        if name == CHROMA_POOL_THREAD:
            pool += 1
        else:
            threads += 1
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        seen.append(target)
        if "chroma.sqlite3" not in target:
            files += 1
    return files, threads, pool, sorted(seen)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts come from /proc")
def test_open_files_and_threads_stay_flat_over_1000_searches(
    qtbot: QtBot, app_home: Path, few_photos: Path
) -> None:
    """A SQLite connection leaked per pool search: the app ran out of files after ~500."""
    with Library(resolve_dirs(), save_settings(app_home, regions_enabled=False)) as lib:
        run_index(lib, [few_photos])
    lib = Library(resolve_dirs())
    # Idle pool threads (each a QThread with an event dispatcher: a thread and a file)
    # live 30 s by default, so how many a count caught depended on timing (+4 of each at
    # the end, once). Here they end 50 ms after their last task, and each count waits
    # for that: what stays is what searches left behind.
    c = start_controller(qtbot, lib, pool_expiry_ms=50)
    try:
        paths = sorted(str(p) for p in few_photos.iterdir())
        queries: list[Callable[[int], Query]] = [
            lambda i: Query(kind="image", path=paths[i % len(paths)], top_k=5),
            lambda i: Query(kind="similar", path=paths[i % len(paths)], top_k=5),
        ]
        counts: list[tuple[int, int, int, list[str]]] = []
        for i in range(1000):
            with qtbot.waitSignal(c.searcher.completed, timeout=TIMEOUT):
                c.searcher.search(queries[i % 2](i))
            if i in (99, 999):  # after warm-up, and at the end
                qtbot.wait(300)  # idle pool threads end
                counts.append(process_counts())
        (files_warm, threads_warm, _, seen_warm), (files_end, threads_end, pool, seen_end) = counts
        grown = sorted((Counter(seen_end) - Counter(seen_warm)).elements())
        assert files_end <= files_warm + 2, (files_warm, files_end, grown)
        assert threads_end <= threads_warm + 2, (threads_warm, threads_end, grown)
        # Chroma's pool is bounded, not ours to leak: a leak per search would be hundreds
        # here. Its count can pass the pool's maximum for a moment: 13 were caught once,
        # in a fresh clone's CI beside a benchmark (load ≈ 4), where connections are
        # replaced while a closing one's thread has not yet ended (whether Chroma keeps a
        # second pool was not established). Give it time to settle, then bound it.
        deadline = time.monotonic() + 5
        while pool > CHROMA_POOL_MAX and time.monotonic() < deadline:
            qtbot.wait(250)
            pool = process_counts()[2]
        assert pool <= 2 * CHROMA_POOL_MAX, grown
    finally:
        c.shutdown()
        lib.close()
