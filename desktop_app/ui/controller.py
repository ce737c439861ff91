"""The window's controller: the search and indexing flow and its state, with no widgets.

It owns the query history, the current query and its stages (first full-image results,
then partial matches merged in), the result count and threshold, the results model, the
searcher, the indexing worker, the folder watcher and every settings change. Widgets
call its slots and listen to its signals; it never touches a widget, so it can be driven
and tested without a window, and flow logic (what a click, a drop or a finished job
leads to) belongs here rather than in ``main_window.py``.

Ownership and threads: the controller lives on the GUI thread, and so do its signals'
receivers. Searches run in ``pool`` (SearchRunner) and only read; image decoding (query
previews, copies, thumbnails, the preview dialog) runs in ``image_pool``; the duplicate
finder and trash moves in ``finder_pool`` (one thread, so searches never wait behind a
scan of the library); indexing, every catalog and store write ("not duplicates"
included) and the encoder swap run on the worker's own thread, the one writer. All of
them report back through queued signals handled here. The settings object
(``library.settings``) belongs to this thread: a change replaces it (never edits it in
place), and each worker job gets its own snapshot. The model setting is written only
when a switch completes (``model_switched``), so ``settings.json`` and the catalog's
``active_model`` agree even if the app dies mid-switch; ``start`` reconciles them if an
older version left them apart. ``shutdown`` closes nothing under a running thread: it
cancels the searches and the duplicate finder (its own one-thread ``finder_pool``), stops
the worker, cuts the worker's signals and drops the calls they already queued here (so a
late report never reaches a closing window), drains the three pools, and reports whether
all of that stopped in time (``safe_to_close``).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from enum import IntEnum
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QCoreApplication,
    QEvent,
    QMetaObject,
    QObject,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import QImage

from desktop_app.engine.cleanup import NO_CLEANUP
from desktop_app.engine.duplicates import DuplicateGroup
from desktop_app.engine.imageio import Source
from desktop_app.engine.indexer import IndexSummary
from desktop_app.engine.library import Library
from desktop_app.engine.scanner import folder_has_images, is_within
from desktop_app.engine.search import SearchResult, follow_library
from desktop_app.engine.settings import Settings
from desktop_app.engine.status import LibraryStatus
from desktop_app.ui.collector import GuiThreadCollector
from desktop_app.ui.controller_features import FeatureSlots
from desktop_app.ui.geometry import Region
from desktop_app.ui.history import QueryHistory
from desktop_app.ui.images import LoadedQImage, load_qimage
from desktop_app.ui.results_model import ResultsModel
from desktop_app.ui.search_runner import Query, QueryKind, SearchRunner
from desktop_app.ui.tasks import BackgroundCalls
from desktop_app.ui.thumbnails import ThumbnailCache
from desktop_app.ui.watcher import FolderWatcher
from desktop_app.ui.worker import (
    ForgetJob,
    IndexJob,
    IndexWorker,
    LoadEncoderJob,
    MarkNotDuplicatesJob,
    ReindexJob,
    describe_summary,
)

log = logging.getLogger(__name__)

QUERY_PREVIEW_SIDE = 1024
RERUN_DELAY_MS = 250  # a dragged slider re-searches once it rests, not at every step
WORKER_STOP_MS = 30_000  # a batch in flight finishes well within this on a CPU
POOL_STOP_MS = 10_000


class Page(IntEnum):
    """What the middle of the window shows."""

    EMPTY_LIBRARY = 0  # no folder yet: guide to add one
    NO_QUERY = 1
    RESULTS = 2
    NO_RESULTS = 3


class SearchController(FeatureSlots, QObject):
    query_described = Signal(str)  # one line on the current query and its state
    query_image = Signal(object, object, object)  # QImage | None, region | None, full size
    query_hint = Signal(str)  # shown where the query image goes (text query, load error)
    results_shown = Signal(object, object, float)  # query, results, seconds (every stage)
    page_changed = Signal(int)  # Page
    history_changed = Signal(bool, bool)  # can go back, can go forward
    roots_changed = Signal(list)  # [{"path", "online"?, "files"?}] as RootStatus.to_json()
    status_changed = Signal(object)  # LibraryStatus, after every indexing job
    encoder_ready = Signal(str, bool)  # description, can search by text
    encoder_failed = Signal(str)  # the encoder could not be loaded: why
    counts_changed = Signal(int, int)  # images indexed, files that failed
    paused_changed = Signal(bool)
    limits_changed = Signal(int, float)  # result count, threshold (from settings)
    message = Signal(str, int)  # a transient status message and its timeout in ms
    query_image_region_cleared = Signal()  # the query runs on the whole image again
    # the indexing worker's own signals, passed through
    progress = Signal(object)  # Progress
    busy = Signal(bool)
    queue_length = Signal(int)
    not_duplicates_marked = Signal(object, str)  # DuplicateGroup, why it failed ('' if not)

    def __init__(self, library: Library, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.settings = library.settings
        # Searches in their own pool, thumbnails and previews in another, both apart from
        # the indexing thread: a long partial-match stage never holds up thumbnails.
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.image_pool = QThreadPool(self)
        self.image_pool.setMaxThreadCount(max(2, QThreadPool.globalInstance().maxThreadCount()))
        self.calls = BackgroundCalls(self.image_pool, self)
        # The duplicate finder (a scan of the whole library) and trash moves get a pool of
        # their own, one thread: searches never wait behind them. Each finder run gets a
        # cancel event from ``finder_cancel``; shutdown sets them all, then drains it.
        self.finder_pool = QThreadPool(self)
        self.finder_pool.setMaxThreadCount(1)
        self.finder_calls = BackgroundCalls(self.finder_pool, self)
        self._finder_cancels: list[threading.Event] = []
        self.thumbnails = ThumbnailCache(library.dirs.thumbnails, self.image_pool, self)
        self.model = ResultsModel(self.thumbnails, self)
        self.model.sort_order = self.settings.sort_order
        self.searcher = SearchRunner(library, self.pool, self)
        self.worker = IndexWorker(library)
        self.watcher = FolderWatcher(self.settings.file_types, self)
        # Python's collector runs on this thread only while the window lives (collector.py)
        self.collector = GuiThreadCollector(self)
        self.history: QueryHistory[Query] = QueryHistory()
        self.current: Query | None = None
        self.roots: list[dict[str, Any]] = []
        self.last_status: LibraryStatus | None = None
        self.last_summary: IndexSummary | None = None
        self.search_seconds = 0.0
        self.has_text = False
        self.running_encoder, self.encoder_warning = "", ""
        self.top_k = self.settings.top_k
        # the toolbar's slider has whole hundredths from 0: the threshold a query gets
        self.threshold = round(max(0.0, self.settings.threshold) * 100) / 100
        self.thumb_size = self.settings.thumbnail_size
        self._init_features()
        self._unrecorded: Query | None = None  # enters the history once it has results
        self._watch = False
        self._shut = False
        self._clean = False  # the worker and the pools stopped in time
        self.pending_model: str | None = None  # a switch submitted, not completed yet
        self._frozen = False  # gc.freeze() done (after the first encoder load)
        self._rerun = QTimer(self)
        self._rerun.setSingleShot(True)
        self._rerun.setInterval(RERUN_DELAY_MS)
        self._rerun.timeout.connect(self.rerun)
        self._connect()

    def _connect(self) -> None:
        self.searcher.finished.connect(self._show_results)
        self.searcher.updated.connect(self._show_results)  # partial matches merged in
        self.searcher.failed.connect(self._search_failed)
        w = self.worker
        # Every link from the worker to this object is kept, so shutdown can cut them
        # all (and drop what they already queued) before the references go.
        self._worker_links: list[QMetaObject.Connection] = [
            signal.connect(slot)
            for signal, slot in (
                (w.progress, self.progress),
                (w.busy, self.busy),
                (w.queue_length, self.queue_length),
                (w.finished, self._index_finished),
                (w.failed, self._worker_failed),  # it says what failed
                (w.status, self._on_status),
                (w.encoder_ready, self._on_encoder_ready),
                (w.encoder_failed, self.encoder_failed),
                (w.model_switched, self._model_switched),
                (w.switch_abandoned, self._switch_abandoned),
                (w.not_duplicates_marked, self.not_duplicates_marked),
            )
        ]
        self.watcher.changed.connect(lambda paths: self.worker.submit(IndexJob(paths, add=False)))
        self.watcher.root_returned.connect(lambda root: self.worker.submit(IndexJob([root])))
        self.watcher.root_offline.connect(self._root_offline)
        self.watcher.watch_started.connect(
            lambda root: self.worker.submit(IndexJob([root], add=False))
        )
        self.watcher.notice.connect(lambda text: self.message.emit(text, 15000))

    def start(self, *, watch: bool = True) -> None:
        """Start the worker (the encoder loads first), catch up on what changed while the
        app was closed, and watch the folders. Call once the receivers are connected."""
        self.collector.start()
        self._reconcile_model()
        # the counts now, from the catalog alone: the encoder loads later, in the worker
        counts = self.library.catalog.counts()
        self.counts_changed.emit(counts["files"], counts["failed"])
        self.worker.start()
        self.worker.submit(LoadEncoderJob())
        roots = self.library.roots()
        # reachability comes with the worker's first status: a hung share must not block here
        self._set_roots([{"path": r} for r in roots])
        self._watch = watch and self.settings.watch_folders
        if roots and not self._watch:  # catch what changed while the app was closed
            self.worker.submit(IndexJob([], add=False))
        if self._watch:  # each root is caught up once its watch exists (watch_started)
            self.watcher.start()
            self.watcher.set_roots(roots)

    # -- queries ---------------------------------------------------------------------
    def _query(self, **kw: Any) -> Query:
        return Query(top_k=self.top_k, threshold=self.threshold, **kw)

    def search_file(self, path: Path | str) -> None:
        q = self._query(kind="image", path=str(Path(path).resolve()), label=Path(path).name)
        self._start(q)

    def search_bytes(self, data: bytes, label: str = "pasted image") -> None:
        self._start(self._query(kind="image", data=data, label=label))

    def search_url(self, url: str) -> None:
        self._start(self._query(kind="url", text=url, label=url.rsplit("/", 1)[-1] or url))

    def search_text(self, text: str) -> None:
        text = text.strip()
        if text and self.has_text:
            self._start(self._query(kind="text", text=text, label=f'"{text}"'))

    def search_region(self, region: Region) -> None:
        """Search by a part of the current query image (a rubber band on the drop zone)."""
        if self.current is None or self.current.kind == "text":
            return
        base = self.current
        q = self._query(
            kind="image" if base.kind != "similar" else "similar",
            path=base.path,
            data=base.data,
            label=base.label,
            region=region,
        )
        if base.kind == "url":
            q.kind, q.text = QueryKind.URL, base.text
        self._start(q, reload_preview=False)

    def find_similar(self, result: SearchResult) -> None:
        region = result.region if result.match == "partial" else None
        name = Path(result.path).name
        self._start(self._query(kind="similar", path=result.path, label=name, region=region))

    def back(self) -> None:
        self._go(self.history.back())

    def forward(self) -> None:
        self._go(self.history.forward())

    def set_limits(self, top_k: int, threshold: float) -> None:
        """The result count or threshold moved: re-run the current query once it rests."""
        if (top_k, threshold) != (self.top_k, self.threshold):
            self.top_k, self.threshold = top_k, threshold
            self._rerun.start()

    def rerun(self) -> None:
        if self.current is not None:
            q = self.current
            q.top_k, q.threshold = self.top_k, self.threshold
            self._start(q, record=False, reload_preview=False)

    def _start(self, q: Query, record: bool = True, reload_preview: bool = True) -> None:
        self.current = q
        q.result_filter = self._filter_for(q)
        # clean-up applies to images the user brings, not to indexed files (Find similar)
        q.cleanup = self.cleanup if q.kind in ("image", "url") else NO_CLEANUP
        # a query enters the history with its first results: a rejected one (unreadable
        # image, failed download) is never stepped back to
        self._unrecorded = q if record else None
        self.query_described.emit(f"Searching {q.describe()}…")
        if reload_preview:
            self._load_preview(q)
        self.searcher.search(q)

    def _go(self, q: Query | None) -> None:
        if q is not None:
            self._history_moved()
            self._start(q, record=False)

    def _history_moved(self) -> None:
        self.history_changed.emit(self.history.can_back(), self.history.can_forward())

    def _load_preview(self, q: Query) -> None:
        """The query image for the drop zone, decoded in the image pool."""
        if q.kind == "text":
            self.query_image.emit(None, None, None)
            self.query_hint.emit(f"Text search:\n{q.text}")
            return
        source: Source | None = q.data if q.data is not None else q.path
        if source is None:
            return

        def shown(got: LoadedQImage) -> None:
            if self.current is q:  # a newer query's image must not be replaced by this one
                self.query_image.emit(got.image, q.region, got.full_size)

        cleanup = q.cleanup
        self.calls.call(
            lambda: load_qimage(source, max_side=QUERY_PREVIEW_SIDE, cleanup=cleanup),
            shown,
            self.query_hint.emit,
        )

    def _show_results(self, q: Query, results: list[SearchResult], seconds: float) -> None:
        if self._unrecorded is q:
            self._unrecorded = None
            self.history.push(q)
            self._history_moved()
        self.search_seconds = seconds
        self.model.set_results(results)
        self.query_described.emit(
            f"{q.describe()}: {len(results)} results in {seconds * 1000:.0f} ms"
        )
        self.results_shown.emit(q, results, seconds)
        self.page_changed.emit(self.page())

    def _search_failed(self, q: Query, message: str) -> None:
        self.query_described.emit(f"{q.describe()}: {message}")
        self.message.emit(message, 8000)

    def page(self) -> Page:
        if not self.roots and self.model.rowCount() == 0:
            return Page.EMPTY_LIBRARY
        if self.current is None:
            return Page.NO_QUERY
        if self.model.rowCount() == 0:
            return Page.NO_RESULTS
        return Page.RESULTS

    def copy_image(self, path: str, deliver: Callable[[QImage], None]) -> None:
        """Decode ``path`` in the image pool and hand the QImage to ``deliver`` (on the
        GUI thread, e.g. the clipboard's setImage); a failure becomes a message."""

        def copied(image: QImage) -> None:
            deliver(image)
            self.message.emit(f"Copied the image {Path(path).name}", 4000)

        self.calls.call(
            lambda: load_qimage(path).image, copied, lambda msg: self.message.emit(msg, 6000)
        )

    # -- folders and indexing --------------------------------------------------------
    def add_folder(self, folder: str) -> None:
        path = str(Path(folder).resolve())
        inside = next((r for r in self.library.roots() if is_within(path, r) and r != path), None)
        if inside is not None:
            self.message.emit(
                f"{path} is inside the watched folder {inside}: it is already indexed "
                "as part of it.",
                10000,
            )
            self.worker.submit(IndexJob([path], add=True))  # refreshes it, adds no folder
            return
        self.calls.call(
            lambda: folder_has_images(path, self.settings.file_types), self._said_empty(path)
        )
        self.worker.submit(IndexJob([path], add=True))
        known = [str(r["path"]) for r in self.roots]
        if path not in known:
            self._set_roots([{"path": p, "online": True} for p in [*known, path]])

    def remove_folder(self, folder: str) -> None:
        self.worker.submit(ForgetJob(folder))

    def mark_not_duplicates(self, group: DuplicateGroup) -> None:
        """A catalog write: the worker does it (the one writer) and answers with
        ``not_duplicates_marked``."""
        self.worker.submit(MarkNotDuplicatesJob(group))

    def finder_cancel(self) -> threading.Event:
        """A cancel event for one duplicate-finder run; shutdown sets it (closing the
        main window never reaches the review dialog's closeEvent)."""
        self._finder_cancels = [e for e in self._finder_cancels if not e.is_set()]
        event = threading.Event()
        self._finder_cancels.append(event)
        return event

    def toggle_pause(self) -> None:
        if self.worker.paused:
            self.worker.unpause()
        else:
            self.worker.pause()
        self.paused_changed.emit(self.worker.paused)

    def cancel_indexing(self) -> None:
        self.worker.cancel_current()

    def _set_roots(self, roots: list[dict[str, Any]]) -> None:
        self.roots = roots
        self.roots_changed.emit(roots)
        self.page_changed.emit(self.page())

    def _root_offline(self, root: str) -> None:
        """A watched folder vanished: shown offline at once, its entries kept."""
        roots = [{**r, "online": False} if r["path"] == root else r for r in self.roots]
        self.model.set_offline_roots([r["path"] for r in roots if r.get("online") is False])
        self._set_roots(roots)
        self.message.emit(f"{root} is offline; its photos stay in the library", 10000)

    def _worker_failed(self, message: str) -> None:
        self.message.emit(message, 0)

    def _index_finished(self, summary: IndexSummary) -> None:
        self.last_summary = summary
        self.message.emit(describe_summary(summary), 10000)

    def _on_status(self, st: LibraryStatus) -> None:
        self.last_status = st
        self.counts_changed.emit(st.files, st.failed)
        self.model.set_offline_roots([r.path for r in st.roots if not r.online])
        if self._watch:
            self.watcher.set_roots([r.path for r in st.roots])
        self.status_changed.emit(st)
        self._set_roots([r.to_json() for r in st.roots])
        self._follow_library()

    def _follow_library(self) -> None:
        """After each job, the results on screen follow the library: a renamed file's
        result gets its new path, a deleted one is marked (looked up in the image pool)."""
        results, version = self.model.results(), self.model.version
        if not results:
            return
        catalog = self.library.catalog
        self.calls.call(
            lambda: follow_library(catalog, results),
            lambda resolved: self.model.follow(version, resolved),
            lambda msg: log.warning("results could not follow the library: %s", msg),
        )

    def _on_encoder_ready(self, description: str, warning: str) -> None:
        # torch, Chroma and Qt are loaded now: move their millions of long-lived objects
        # out of the collector's sight, so a full collection (which stops every thread,
        # this one too) scans only what the app allocates from here on. Once only: a
        # frozen object is never collected, and each encoder switch leaves the previous
        # encoder to be freed.
        if not self._frozen:
            self._frozen = True
            gc.collect()
            gc.freeze()
        self.has_text = self.library.encoder.has_text
        # what Settings shows: the encoder that runs, and why it is not the configured one
        self.running_encoder, self.encoder_warning = description, warning
        self.encoder_ready.emit(description, self.has_text)
        if warning:
            self.message.emit(warning, 15000)

    # -- settings: every change goes through here ------------------------------------
    def settings_for_dialog(self) -> Settings:
        """A copy for the Settings dialog, showing a switch in progress as chosen."""
        return replace(self.settings.snapshot(), model=self.pending_model or self.settings.model)

    def apply_settings(self, new: Settings) -> None:
        """Settings from the dialog: saved at once, except the model, which is saved when
        the re-index for it completes (the current index keeps answering until then)."""
        wanted = new.model
        self._replace_settings(replace(new.snapshot(), model=self.settings.model))
        self.limits_changed.emit(self.settings.top_k, self.threshold)
        if wanted != (self.pending_model or self.settings.model):
            self.pending_model = wanted
            self.worker.submit(ReindexJob(wanted))
            self.message.emit(
                f"Re-indexing with {wanted}; the current index keeps answering until it is done.",
                10000,
            )

    def _replace_settings(self, new: Settings) -> None:
        # a new object, never an edit in place: a search on a pool thread may be reading
        # the old one, and the worker reads only its own snapshots
        self.settings = self.library.settings = new
        self._save_settings()

    def _save_settings(self) -> None:
        try:
            self.settings.save(self.library.dirs.settings_path)
        except OSError as exc:
            log.warning("could not save settings: %s", exc)
            self.message.emit(f"Could not save the settings: {exc}", 10000)

    def _model_switched(self, model: str) -> None:
        """The worker completed a switch: the catalog says ``model`` now; so do the
        settings."""
        if self.pending_model == model:
            self.pending_model = None
        self._replace_settings(replace(self.settings, model=model))

    def _switch_abandoned(self, model: str) -> None:
        """A switch failed (its message says why) or was cancelled: the dialog shows the
        encoder that answers, not one that will never come."""
        if self.pending_model == model:
            self.pending_model = None

    def _reconcile_model(self) -> None:
        """The catalog's active model is the truth (it names the vectors on disk): a
        settings file that says otherwise (an app that died mid-switch) follows it."""
        active = self.library.slot.spec
        if self.settings.model != active:
            log.warning(
                "settings name the encoder %s, the library is indexed with %s: using %s",
                self.settings.model,
                active,
                active,
            )
            self._replace_settings(replace(self.settings, model=active))

    def set_sort_order(self, order: str) -> None:
        self.model.set_sort_order(order)

    def set_thumb_size(self, side: int) -> None:
        self.thumb_size = side

    def _save_view_settings(self) -> None:
        size, order = self.thumb_size, self.model.sort_order
        if (self.settings.thumbnail_size, self.settings.sort_order) != (size, order):
            self._replace_settings(replace(self.settings, thumbnail_size=size, sort_order=order))

    # -- quitting --------------------------------------------------------------------
    def _cut_worker_links(self) -> None:
        """After the worker stopped (or was given up on): disconnect its signals from
        this object, then drop the calls they already queued here. A disconnect alone
        is not enough: Qt still delivers a queued call posted before it. From here on no
        worker report can reach the controller (or through it the window), even one
        from a worker that outlived its time-out, so no slot needs a guard of its own."""
        for link in self._worker_links:
            QObject.disconnect(link)
        self._worker_links = []
        QCoreApplication.removePostedEvents(self, QEvent.Type.MetaCall)

    @property
    def stopped(self) -> bool:
        return self._shut

    @property
    def safe_to_close(self) -> bool:
        """True once shutdown saw the worker and both pools stop: only then may the
        library (SQLite, Chroma) be closed. Otherwise leave it to the process exit."""
        return self._clean

    def shutdown(
        self, worker_timeout_ms: int = WORKER_STOP_MS, pool_timeout_ms: int = POOL_STOP_MS
    ) -> bool:
        """Quit cleanly even mid-index: cancel, wait for the worker, drain the pools.
        Returns ``safe_to_close``; a thread that did not stop in time is logged."""
        if self._shut:
            return self._clean
        self._shut = True
        self._save_view_settings()
        self._rerun.stop()
        self.watcher.stop()
        self.searcher.cancel_all()  # running searches stop at their next stage or candidate
        for event in self._finder_cancels:  # a duplicate finder stops at its next batch
            event.set()
        clean = self.worker.stop(worker_timeout_ms)
        if not clean:
            log.error("the indexing worker did not stop within %d ms", worker_timeout_ms)
        self._cut_worker_links()
        for pool in (self.pool, self.image_pool, self.finder_pool):
            pool.clear()
            if not pool.waitForDone(pool_timeout_ms):
                log.error("background tasks still running after %d ms", pool_timeout_ms)
                clean = False
        self._clean = clean
        # with a thread still running, the collector must not come back on its own there
        self.collector.stop(restore=clean)
        return clean
