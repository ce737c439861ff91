"""Thread-ownership faults of the window (issue 9's review, second pass), each with a test
that failed before its fix. Fast tier: the ``histogram`` encoder; nothing waits on a
sleep or asserts a time."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.engine.library import Library
from desktop_app.engine.settings import Settings
from desktop_app.ui.controller import SearchController
from desktop_app.ui.worker import IndexJob, IndexWorker

from . import test_ui_reliability as reliability
from .conftest import PHOTOS

# the controller on a fast-encoder library, as the reliability tests set it up (fixtures)
TIMEOUT = reliability.TIMEOUT
library = reliability.library
controller = reliability.controller
start_controller = reliability.start_controller


@pytest.fixture
def few_photos(tmp_path: Path) -> Path:
    """Six photos (the job-merging test counts them)."""
    folder = tmp_path / "few"
    folder.mkdir()
    for p in PHOTOS[:6]:
        shutil.copy2(p, folder / p.name)
    return folder


# -- 8: one cancel stopped every job merged into the same run --------------------------------
def test_a_cancel_stops_its_own_job_not_the_next_one_in_the_same_run(
    qtbot: QtBot, library: Library, few_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = IndexWorker(library)
    real_index = library.index
    runs: list[list[str]] = []

    def index(paths: Any = (), cancel: threading.Event | None = None, **kw: Any) -> Any:
        runs.append([str(p) for p in paths])
        if len(runs) == 1:
            assert cancel is not None
            cancel.set()  # the user pressed Cancel while the first job ran
        return real_index(paths, cancel, **kw)

    monkeypatch.setattr(library, "index", index)
    # queued before the thread starts: both are taken into one run (not merged: the
    # second has no paths, it checks every library folder)
    w.submit(IndexJob([str(few_photos)]))
    w.submit(IndexJob([], add=False))
    summaries: list[Any] = []
    w.finished.connect(summaries.append)
    with qtbot.waitSignal(w.status, timeout=TIMEOUT):
        w.start()
    assert w.stop()
    assert len(runs) == 2
    assert [s.cancelled for s in summaries] == [True, False]
    assert library.catalog.counts()["files"] == 6  # the second job indexed them


# -- 1: quitting during a CLIP download -------------------------------------------------------
def test_quitting_during_a_weights_download_stops_it_at_the_next_chunk(
    qtbot: QtBot, controller: SearchController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download reported to the window's monitor, whose cancel only the dialog set:
    shutdown cancelled the worker's job, the download went on and the worker outlived
    the quit."""
    from desktop_app.engine.errors import DownloadCancelled
    from desktop_app.ui import worker as worker_module
    from desktop_app.ui.download import DownloadMonitor

    monitor = DownloadMonitor()
    controller.worker.download_progress = monitor.report  # as the window wires it
    downloading, test_over = threading.Event(), threading.Event()

    class DownloadingSlot:
        """Stands in for a CLIP slot whose weights arrive in chunks (no network here)."""

        def __init__(self, spec: str, settings: Settings, progress: Any = None) -> None:
            self.spec, self._progress = spec, progress

        def get(self, progress: Any = None) -> Any:
            report = progress or self._progress
            for chunk in range(1, 10**7):
                if test_over.is_set():
                    raise DownloadCancelled("the test ended the download")
                report(chunk * 2**10, 600 * 2**20, "open_clip_model.safetensors")
                downloading.set()
                test_over.wait(0.002)  # the next chunk arrives
            raise AssertionError("unreachable")

    monkeypatch.setattr(worker_module, "EncoderSlot", DownloadingSlot)
    from desktop_app.ui.worker import ReindexJob

    controller.worker.submit(ReindexJob("ViT-B-32:laion2b_s34b_b79k"))
    qtbot.waitUntil(downloading.is_set, timeout=TIMEOUT)
    try:
        assert controller.shutdown(worker_timeout_ms=20_000) is True
        assert controller.safe_to_close
    finally:
        test_over.set()
        assert controller.worker._thread.wait(30_000)


def test_download_progress_past_2_gb_reaches_the_window(qtbot: QtBot) -> None:
    """A Qt int is 32 bits: a weights file past 2 GB raised OverflowError at the emit, on
    the downloading thread, and the load failed."""
    from desktop_app.ui.download import DownloadMonitor

    monitor = DownloadMonitor()
    with qtbot.waitSignal(monitor.progressed, timeout=TIMEOUT) as got:
        monitor.report(3 * 2**30, 4 * 2**30, "open_clip_model.safetensors")
    assert got.args[:2] == [3 * 2**30, 4 * 2**30]


# -- 11: a search thread wrote the GUI thread's Query -----------------------------------------
def test_a_url_search_never_writes_the_query_on_its_thread(
    qtbot: QtBot, library: Library, few_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop_app.ui import search_runner
    from desktop_app.ui.search_runner import Query, SearchRunner, run_query

    for _ in library.index([str(few_photos)]):
        pass
    photo = sorted(few_photos.glob("*.jpg"))[0]
    downloads: list[str] = []

    def fetch(url: str) -> bytes:
        downloads.append(url)
        return photo.read_bytes()

    monkeypatch.setattr(search_runner, "fetch_url", fetch)
    q = Query(kind="url", text="https://example.org/a.jpg")
    stages = run_query(library, q)  # as a pool thread runs it
    assert q.data is None  # the GUI thread's object is untouched
    assert stages[0]()[0].path == str(photo)
    # through the runner: the bytes reach the query on the GUI thread, once
    from PySide6.QtCore import QThreadPool

    pool = QThreadPool()
    runner = SearchRunner(library, pool)
    with qtbot.waitSignal(runner.completed, timeout=TIMEOUT):
        runner.search(q)
    assert pool.waitForDone(TIMEOUT)
    assert q.data == photo.read_bytes()
    assert len(downloads) == 2  # one for the direct call above, one for the runner


# -- 6: "not duplicates" is the writer's ------------------------------------------------------
def test_not_duplicates_is_written_by_the_worker_thread(
    qtbot: QtBot, controller: SearchController, few_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was written from the search pool: a second writer beside the worker."""
    from PIL import Image
    from PySide6.QtCore import QThread

    from desktop_app.engine.duplicates import last_report

    photo = sorted(few_photos.glob("*.jpg"))[0]
    small = few_photos / "small.jpg"
    with Image.open(photo) as im:
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(small, quality=60)
    files = len(list(few_photos.glob("*.jpg")))
    # the status after the job that indexed them all (an earlier job's may come first)
    with qtbot.waitSignal(
        controller.worker.status, timeout=TIMEOUT, check_params_cb=lambda st: st.files == files
    ):
        controller.add_folder(str(few_photos))
    library = controller.library

    def groups_with_the_copy() -> list[Any]:
        report = last_report(library.duplicates("near"))
        return [g for g in report.groups if str(small) in g.paths]

    (group,) = groups_with_the_copy()
    catalog = library.catalog
    real_mark = catalog.mark_not_duplicates
    writers: list[QThread] = []

    def mark(pairs: Any) -> None:
        writers.append(QThread.currentThread())
        real_mark(pairs)

    monkeypatch.setattr(catalog, "mark_not_duplicates", mark)
    with qtbot.waitSignal(controller.not_duplicates_marked, timeout=TIMEOUT) as got:
        controller.mark_not_duplicates(group)
    assert got.args == [group, ""]
    assert writers == [controller.worker._thread]
    assert groups_with_the_copy() == []  # remembered


# -- 7 and 9: the duplicate finder has its own thread and stops at quit -----------------------
def test_the_duplicate_finder_leaves_the_search_pool_free_and_stops_at_quit(
    qtbot: QtBot, library: Library, few_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ran in the 2-thread search pool (searches waited behind it), and closing the
    main window never reached the dialog's closeEvent, so a running finder was not
    cancelled and the quit waited for the whole scan."""
    from desktop_app.engine.duplicates import DuplicateProgress, DuplicateReport
    from desktop_app.ui.main_window import MainWindow

    win = MainWindow(library, watch=False)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.controller.running_encoder != "", timeout=TIMEOUT)
    scanning, test_over = threading.Event(), threading.Event()

    def long_scan(
        preset: str = "near", threshold: float | None = None, cancel: Any = None
    ) -> Iterator[DuplicateProgress]:
        """A library too big to scan before the user quits: it checks ``cancel`` between
        batches, as find_duplicates does."""
        scanning.set()
        batch = 0
        while not cancel.is_set() and not test_over.is_set():
            batch += 1
            yield DuplicateProgress("searching", batch, 10**9)
            cancel.wait(0.005)  # one batch of nearest-neighbour queries
        yield DuplicateProgress("done", batch, batch, DuplicateReport(preset, 0.9, [], 0, True))

    monkeypatch.setattr(library, "duplicates", long_scan)
    dialog = win.features.open_duplicates()
    dialog.find_button.click()
    try:
        qtbot.waitUntil(scanning.is_set, timeout=TIMEOUT)
        assert win.controller.pool.activeThreadCount() == 0  # searches have both threads
        assert win.shutdown() is True  # the finder stopped; the pools drained in time
    finally:
        test_over.set()
        win.controller.finder_pool.waitForDone(30_000)


# -- 10: thumbnails that failed were remembered for good, without bound ------------------------
def test_a_thumbnail_that_failed_is_retried_once_its_file_changes_and_failures_are_bounded(
    qtbot: QtBot, tmp_path: Path
) -> None:
    from PySide6.QtCore import QThreadPool

    from desktop_app.ui.thumbnails import RETRY_S, ThumbnailCache

    now = [1000.0]
    pool = QThreadPool()
    cache = ThumbnailCache(tmp_path / "thumbs", pool, clock=lambda: now[0])
    photo = tmp_path / "copying.jpg"
    photo.write_bytes(PHOTOS[0].read_bytes()[:200])  # still being copied: truncated
    key = cache.key_for(str(photo), "")
    with qtbot.waitSignal(cache.ready, timeout=TIMEOUT):
        assert cache.get(key, str(photo)) is None
    assert cache.failed(key)
    assert pool.waitForDone(TIMEOUT)  # the failed load's task may still be ending after ready
    assert cache.get(key, str(photo)) is None and not pool.activeThreadCount()  # not again
    now[0] += RETRY_S + 1  # a while later, unchanged: checked, not decoded, still failed
    with qtbot.waitSignal(cache.ready, timeout=TIMEOUT):
        cache.get(key, str(photo))
    assert cache.failed(key)
    photo.write_bytes(PHOTOS[0].read_bytes())  # the copy finished
    assert cache.get(key, str(photo)) is None  # not before the next check is due
    now[0] += RETRY_S + 1
    with qtbot.waitSignal(cache.ready, timeout=TIMEOUT):
        cache.get(key, str(photo))
    assert not cache.failed(key)
    pixmap = cache.get(key, str(photo))
    assert pixmap is not None and not pixmap.isNull()
    # bounded: a session that meets thousands of bad files keeps only the newest
    cache.max_failed = 3
    for i in range(5):
        bad = tmp_path / f"bad{i}.jpg"
        bad.write_bytes(b"not an image")
        with qtbot.waitSignal(cache.ready, timeout=TIMEOUT):
            cache.get(cache.key_for(str(bad), ""), str(bad))
    assert cache.failed_count == 3
    assert pool.waitForDone(TIMEOUT)


# -- 12: the worker's signals are cut at shutdown ---------------------------------------------
def test_worker_reports_queued_before_shutdown_never_reach_the_controller(
    qtbot: QtBot, controller: SearchController
) -> None:
    """Each worker-fed slot had a ``_shut`` guard of its own, and the passed-through
    signals (busy, progress) none: a report queued just before the worker stopped still
    reached the closing window. Shutdown now disconnects the worker and drops what its
    signals had already queued (a disconnect alone still delivers those)."""
    from PySide6.QtCore import QCoreApplication

    w = controller.worker
    late_status = controller.library.status(load_encoder=False)
    seen: list[object] = []
    for signal in (controller.busy, controller.counts_changed, controller.message):
        signal.connect(lambda *args: seen.append(args))
    model_before = controller.settings.model

    def late_reports() -> None:  # the worker's thread, an instant before it stops
        w.busy.emit(True)
        w.status.emit(late_status)
        w.model_switched.emit("ViT-B-32:laion2b_s34b_b79k")
        w.failed.emit("Indexing failed: late")

    reporter = threading.Thread(target=late_reports)
    reporter.start()
    reporter.join()
    assert controller.shutdown() is True
    QCoreApplication.processEvents()  # whatever was queued is delivered now, or never
    assert seen == []
    assert controller.settings.model == model_before
    assert controller.last_status is None or controller.last_status is not late_status


# -- R2 7: "not duplicates" waited behind a running (or paused) index job --------------------
def test_not_duplicates_is_written_while_an_index_run_is_paused(
    qtbot: QtBot, library: Library, few_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark queued behind the run: while indexing was paused it never ran, and the
    review dialog showed "Remembering…" with every control disabled. It now runs on the
    same worker thread (the one writer) between files, and while the run is paused."""
    from desktop_app.engine.duplicates import DuplicateFile, DuplicateGroup
    from desktop_app.ui.worker import MarkNotDuplicatesJob

    w = IndexWorker(library)
    real_index = library.index
    mid_run = threading.Event()

    def index(*args: Any, **kw: Any) -> Any:
        for progress in real_index(*args, **kw):
            mid_run.set()  # the run has started: the worker holds between files now
            yield progress

    monkeypatch.setattr(library, "index", index)
    files = [DuplicateFile(f"/x/{fp}.jpg", fp, 1, 1, 1, 0) for fp in ("aa", "bb")]
    group = DuplicateGroup(files, 0.99, "near")
    marked: list[tuple[Any, str]] = []
    w.not_duplicates_marked.connect(lambda g, why: marked.append((g, why)))
    w.pause()
    w.start()
    try:
        w.submit(IndexJob([str(few_photos)]))
        qtbot.waitUntil(mid_run.is_set, timeout=TIMEOUT)
        with qtbot.waitSignal(w.not_duplicates_marked, timeout=60_000):
            w.submit(MarkNotDuplicatesJob(group))
        assert w.paused  # still paused: the mark did not wait for the run
        assert marked == [(group, "")]
        assert library.catalog.not_duplicate_pairs() == {("aa", "bb")}
        lengths: list[int] = []
        w.queue_length.connect(lengths.append)
        w.submit(IndexJob([], add=False))
        assert lengths == [1]  # one job waits; the mark's wake-up is not counted
        with qtbot.waitSignal(w.finished, timeout=TIMEOUT):
            w.unpause()
    finally:
        assert w.stop()
    assert library.catalog.counts()["files"] == 6  # the run went on after the mark
