"""The main window: query panel and watched folders on the left, the results grid in the
middle, search controls in the tool bar, indexing state in the status bar."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QThreadPool, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.imageio import load_image
from desktop_app.engine.indexer import IndexSummary, Progress
from desktop_app.engine.library import Library
from desktop_app.engine.search import SearchResult
from desktop_app.engine.settings import SORT_ORDERS
from desktop_app.engine.status import LibraryStatus
from desktop_app.ui.dialogs import FailuresDialog, SettingsDialog
from desktop_app.ui.folders import FolderPanel
from desktop_app.ui.history import QueryHistory
from desktop_app.ui.images import pil_to_qimage
from desktop_app.ui.preview import PreviewDialog
from desktop_app.ui.query_panel import DropZone
from desktop_app.ui.results_model import ResultsModel
from desktop_app.ui.results_view import ResultsView
from desktop_app.ui.search_runner import Query, QueryKind, SearchRunner
from desktop_app.ui.tasks import BackgroundCalls
from desktop_app.ui.thumbnails import ThumbnailCache
from desktop_app.ui.watcher import FolderWatcher
from desktop_app.ui.worker import (
    ForgetJob,
    IndexJob,
    IndexWorker,
    LoadEncoderJob,
    ReindexJob,
    describe_summary,
)

log = logging.getLogger(__name__)

QUERY_PREVIEW_SIDE = 1024
PAGE_EMPTY_LIBRARY, PAGE_NO_QUERY, PAGE_RESULTS, PAGE_NO_RESULTS = range(4)


class MainWindow(QMainWindow):
    def __init__(self, library: Library, *, watch: bool = True) -> None:
        super().__init__()
        self.library = library
        self.settings = library.settings
        self.setWindowTitle("desktop-app — image similarity search")
        self.resize(1280, 800)
        # Searches run in their own pool, thumbnails and previews in another, both apart
        # from the indexing thread: a long partial-match stage never holds up thumbnails.
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.image_pool = QThreadPool(self)
        self.image_pool.setMaxThreadCount(max(2, QThreadPool.globalInstance().maxThreadCount()))
        self.calls = BackgroundCalls(self.image_pool, self)
        self.thumbnails = ThumbnailCache(library.dirs.thumbnails, self.image_pool, self)
        self.model = ResultsModel(self.thumbnails, self)
        self.model.sort_order = self.settings.sort_order
        self.searcher = SearchRunner(library, self.pool, self)
        self.worker = IndexWorker(library)
        self.watcher = FolderWatcher(self.settings.file_types, self)
        self.history = QueryHistory()
        self.current: Query | None = None
        self.last_status: LibraryStatus | None = None
        self.last_summary: IndexSummary | None = None
        self.search_seconds = 0.0
        self.has_text = False
        self._build_ui()
        self._connect()
        self._restore_geometry()
        self.worker.start()
        self.worker.submit(LoadEncoderJob())
        roots = library.roots()
        # reachability comes with the worker's first status: a hung share must not block here
        self.folders.set_folders([{"path": r} for r in roots])
        self._update_page()
        if roots:  # catch what changed while the app was closed, in the background
            self.worker.submit(IndexJob([], add=False))
        if watch and self.settings.watch_folders:
            self.watcher.start()
            self.watcher.set_roots(roots)

    # -- construction -------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.drop_zone = DropZone()
        self.text_box = QLineEdit()
        self.text_box.setPlaceholderText("Loading the encoder…")
        self.text_box.setEnabled(False)
        self.text_button = QPushButton("Search")
        self.text_button.setEnabled(False)
        self.query_label = QLabel("")
        self.query_label.setWordWrap(True)
        text_row = QHBoxLayout()
        text_row.addWidget(self.text_box, 1)
        text_row.addWidget(self.text_button)
        self.folders = FolderPanel()
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addWidget(QLabel("<b>Query</b>"))
        lv.addWidget(self.drop_zone, 3)
        lv.addWidget(self.query_label)
        lv.addLayout(text_row)
        lv.addSpacing(8)
        lv.addWidget(self.folders, 2)

        self.view = ResultsView(self.model)
        self.view.set_thumb_size(self.settings.thumbnail_size)
        self.stack = QStackedWidget()
        self.empty_library = self._message_page(
            "Add a folder to start",
            "Choose a folder of photos; it is indexed in the background and watched for changes.",
            "Add folder…",
            self.folders.choose_folder,
        )
        self.no_query = self._message_page(
            "Drop an image to search",
            "Drop or paste an image on the left, open one with Ctrl+O, or type a description.",
            None,
            None,
        )
        self.no_results = self._message_page(
            "No matches",
            "Nothing is similar enough. Lower the threshold or try another image.",
            None,
            None,
        )
        for page in (self.empty_library, self.no_query, self.view, self.no_results):
            self.stack.addWidget(page)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.stack)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([320, 960])
        self.setCentralWidget(splitter)
        self._build_toolbar()
        self._build_statusbar()

    def _message_page(self, title: str, text: str, button: str | None, slot: Any) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.addStretch(1)
        head = QLabel(f"<h2>{title}</h2>")
        head.setAlignment(Qt.AlignmentFlag.AlignCenter)
        body = QLabel(text)
        body.setAlignment(Qt.AlignmentFlag.AlignCenter)
        body.setWordWrap(True)
        v.addWidget(head)
        v.addWidget(body)
        if button:
            b = QPushButton(button)
            b.clicked.connect(slot)
            row = QHBoxLayout()
            row.addStretch(1)
            row.addWidget(b)
            row.addStretch(1)
            v.addLayout(row)
        v.addStretch(2)
        page.setObjectName(title)
        return page

    def _build_toolbar(self) -> None:
        tb = QToolBar("Search")
        tb.setObjectName("search-toolbar")
        self.addToolBar(tb)
        self.open_action = QAction("Open image…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.paste_action = QAction("Paste", self)
        self.paste_action.setShortcut(QKeySequence.StandardKey.Paste)
        self.back_action = QAction("Back", self)
        self.back_action.setShortcut(QKeySequence("Alt+Left"))
        self.forward_action = QAction("Forward", self)
        self.forward_action.setShortcut(QKeySequence("Alt+Right"))
        self.settings_action = QAction("Settings…", self)
        self.add_folder_action = QAction("Add folder…", self)
        for a in (self.open_action, self.back_action, self.forward_action):
            tb.addAction(a)
        self.addAction(self.paste_action)
        tb.addSeparator()
        tb.addWidget(QLabel(" Results "))
        self.count_box = QSpinBox()
        self.count_box.setRange(1, 10_000)
        self.count_box.setValue(self.settings.top_k)
        tb.addWidget(self.count_box)
        tb.addWidget(QLabel("  Threshold "))
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(round(max(0.0, self.settings.threshold) * 100))
        self.threshold_slider.setFixedWidth(140)
        self.threshold_label = QLabel()
        tb.addWidget(self.threshold_slider)
        tb.addWidget(self.threshold_label)
        tb.addWidget(QLabel("  Sort "))
        self.sort_box = QComboBox()
        self.sort_box.addItems(list(SORT_ORDERS))
        self.sort_box.setCurrentText(self.settings.sort_order)
        tb.addWidget(self.sort_box)
        tb.addWidget(QLabel("  Size "))
        self.zoom_slider = QSlider(Qt.Orientation.Horizontal)
        self.zoom_slider.setRange(64, 320)
        self.zoom_slider.setValue(self.view.delegate.thumb_side)
        self.zoom_slider.setFixedWidth(120)
        tb.addWidget(self.zoom_slider)
        tb.addSeparator()
        tb.addAction(self.add_folder_action)
        tb.addAction(self.settings_action)
        self._update_threshold_label()
        self._update_history_actions()

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        self.files_label = QLabel("No images yet")
        self.queue_label = QLabel("")
        self.failures_button = QPushButton("")
        self.failures_button.setFlat(True)
        self.failures_button.hide()
        self.encoder_label = QLabel("Loading encoder…")
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setTextVisible(True)
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        for w in (self.progress, self.pause_button, self.cancel_button):
            w.hide()
        # Permanent widgets: transient messages (showMessage) must not hide the counts.
        sb.addPermanentWidget(self.files_label)
        sb.addPermanentWidget(self.queue_label)
        sb.addPermanentWidget(self.failures_button)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.pause_button)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.encoder_label)

    def _connect(self) -> None:
        dz = self.drop_zone
        dz.images_dropped.connect(lambda paths: self.search_file(paths[0]))
        dz.folders_dropped.connect(self._offer_folders)
        dz.image_data_dropped.connect(self.search_bytes)
        dz.url_dropped.connect(self.search_url)
        dz.region_selected.connect(self.search_region)
        dz.rejected.connect(lambda msg: self.statusBar().showMessage(msg, 6000))
        self.text_box.returnPressed.connect(self.search_text)
        self.text_button.clicked.connect(self.search_text)
        self.open_action.triggered.connect(self.open_image_dialog)
        self.paste_action.triggered.connect(self.paste)
        self.back_action.triggered.connect(lambda: self._go(self.history.back()))
        self.forward_action.triggered.connect(lambda: self._go(self.history.forward()))
        self.settings_action.triggered.connect(self.open_settings)
        self.add_folder_action.triggered.connect(self.folders.choose_folder)
        self.folders.add_requested.connect(self.add_folder)
        self.folders.remove_requested.connect(self.remove_folder)
        self._rerun = QTimer(self)
        self._rerun.setSingleShot(True)
        self._rerun.setInterval(250)
        self._rerun.timeout.connect(self.rerun)
        self.count_box.valueChanged.connect(lambda _v: self._rerun.start())
        self.threshold_slider.valueChanged.connect(self._threshold_moved)
        self.sort_box.currentTextChanged.connect(self.model.set_sort_order)
        self.zoom_slider.valueChanged.connect(self.view.set_thumb_size)
        self.view.zoom_changed.connect(self.zoom_slider.setValue)
        self.view.find_similar.connect(self.find_similar)
        self.view.preview_requested.connect(self.preview)
        self.view.copy_image_requested.connect(self.copy_image)
        self.searcher.finished.connect(self._show_results)
        self.searcher.updated.connect(self._show_results)  # partial matches merged in
        self.searcher.failed.connect(self._search_failed)
        w = self.worker
        w.progress.connect(self._on_progress)
        w.finished.connect(self._on_index_finished)
        w.failed.connect(lambda msg: self.statusBar().showMessage(f"Indexing failed: {msg}"))
        w.status.connect(self._on_status)
        w.encoder_ready.connect(self._on_encoder_ready)
        w.busy.connect(self._on_busy)
        w.queue_length.connect(lambda n: self.queue_label.setText(f"{n} queued" if n else ""))
        self.pause_button.clicked.connect(self._toggle_pause)
        self.cancel_button.clicked.connect(self.worker.cancel_current)
        self.failures_button.clicked.connect(self.show_failures)
        self.watcher.changed.connect(self._files_changed)
        self.watcher.root_returned.connect(lambda root: self.worker.submit(IndexJob([root])))

    # -- queries -------------------------------------------------------------------------
    def _query(self, **kw: Any) -> Query:
        return Query(
            top_k=self.count_box.value(), threshold=self.threshold_slider.value() / 100.0, **kw
        )

    def search_file(self, path: Path | str) -> None:
        q = self._query(kind="image", path=str(Path(path).resolve()), label=Path(path).name)
        self._start(q)

    def search_bytes(self, data: bytes, label: str = "pasted image") -> None:
        self._start(self._query(kind="image", data=data, label=label))

    def search_url(self, url: str) -> None:
        self._start(self._query(kind="url", text=url, label=url.rsplit("/", 1)[-1] or url))

    def search_text(self) -> None:
        text = self.text_box.text().strip()
        if text and self.has_text:
            self._start(self._query(kind="text", text=text, label=f'"{text}"'))

    def search_region(self, region: tuple[int, int, int, int]) -> None:
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
        self._start(
            self._query(
                kind="similar", path=result.path, label=Path(result.path).name, region=region
            )
        )

    def preview(self, result: SearchResult) -> PreviewDialog:
        dialog = PreviewDialog(result, self.calls, self)
        dialog.find_similar.connect(self.find_similar)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def rerun(self) -> None:
        if self.current is not None:
            q = self.current
            q.top_k, q.threshold = self.count_box.value(), self.threshold_slider.value() / 100.0
            self._start(q, record=False, reload_preview=False)

    def _start(self, q: Query, record: bool = True, reload_preview: bool = True) -> None:
        self.current = q
        if record:
            self.history.push(q)
            self._update_history_actions()
        self.query_label.setText(f"Searching {q.describe()}…")
        if reload_preview:
            self._load_preview(q)
        self.searcher.search(q)

    def _go(self, q: Query | None) -> None:
        if q is not None:
            self._update_history_actions()
            self._start(q, record=False)

    def _load_preview(self, q: Query) -> None:
        """The query image for the drop zone, decoded off the GUI thread."""
        if q.kind == "text":
            self.drop_zone.show_image(None)
            self.drop_zone.set_hint(f"Text search:\n{q.text}")
            return
        source: Any = q.data if q.data is not None else q.path
        if source is None:
            return
        region = q.region

        def load() -> tuple[QImage, int, int]:
            loaded = load_image(source, max_side=QUERY_PREVIEW_SIDE)
            return pil_to_qimage(loaded.image), loaded.width, loaded.height

        def shown(got: tuple[QImage, int, int]) -> None:
            if self.current is q:
                self.drop_zone.show_image(got[0], region, (got[1], got[2]))

        self.calls.call(load, shown, lambda msg: self.drop_zone.set_hint(msg))

    def _show_results(self, q: Query, results: list[SearchResult], seconds: float) -> None:
        self.search_seconds = seconds
        self.model.set_results(results)
        self.query_label.setText(
            f"{q.describe()}: {len(results)} results in {seconds * 1000:.0f} ms"
        )
        self._update_page()

    def _search_failed(self, q: Query, message: str) -> None:
        self.query_label.setText(f"{q.describe()}: {message}")
        self.statusBar().showMessage(message, 8000)

    def _update_page(self) -> None:
        if not self.folders.folders() and self.model.rowCount() == 0:
            page = PAGE_EMPTY_LIBRARY
        elif self.current is None:
            page = PAGE_NO_QUERY
        elif self.model.rowCount() == 0:
            page = PAGE_NO_RESULTS
        else:
            page = PAGE_RESULTS
        self.stack.setCurrentIndex(page)

    # -- input helpers -------------------------------------------------------------------
    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Search by image",
            "",
            "Images (" + " ".join(f"*.{e}" for e in self.settings.file_types) + ")",
        )
        if path:
            self.search_file(path)

    def paste(self) -> None:
        mime = QApplication.clipboard().mimeData()
        if mime is not None and not self.drop_zone.handle_mime(mime):
            self.statusBar().showMessage("The clipboard holds no image", 4000)

    def copy_image(self, path: str) -> None:
        self.calls.call(
            lambda: pil_to_qimage(load_image(path).image),
            lambda img: QApplication.clipboard().setImage(img),
            lambda msg: self.statusBar().showMessage(msg, 6000),
        )

    def _offer_folders(self, folders: list[Path]) -> None:
        for folder in folders:
            answer = QMessageBox.question(
                self, "Watch folder", f"Add {folder} to the library and watch it?"
            )
            if answer == QMessageBox.StandardButton.Yes:
                self.add_folder(str(folder))

    def _threshold_moved(self, value: int) -> None:
        self._update_threshold_label()
        self._rerun.start()

    def _update_threshold_label(self) -> None:
        self.threshold_label.setText(f"{self.threshold_slider.value() / 100:.2f}")

    def _update_history_actions(self) -> None:
        self.back_action.setEnabled(self.history.can_back())
        self.forward_action.setEnabled(self.history.can_forward())

    # -- folders and indexing -----------------------------------------------------------------
    def add_folder(self, folder: str) -> None:
        path = str(Path(folder).resolve())
        self.worker.submit(IndexJob([path], add=True))
        known = self.folders.folders()
        if path not in known:
            self.folders.set_folders([{"path": p, "online": True} for p in [*known, path]])
        self._update_page()

    def remove_folder(self, folder: str) -> None:
        self.worker.submit(ForgetJob(folder))

    def _files_changed(self, paths: list[str]) -> None:
        self.worker.submit(IndexJob(paths, add=False))

    def _on_progress(self, p: Progress) -> None:
        self.progress.show()
        self.progress.setMaximum(max(p.total, 1))
        self.progress.setValue(p.done)
        self.progress.setFormat(f"{p.phase} %v/%m")
        if p.current:
            self.statusBar().showMessage(f"Indexing {Path(p.current).name}", 2000)

    def _on_index_finished(self, summary: IndexSummary) -> None:
        self.last_summary = summary
        self.statusBar().showMessage(describe_summary(summary), 10000)

    def _on_busy(self, busy: bool) -> None:
        for w in (self.progress, self.pause_button, self.cancel_button):
            w.setVisible(busy)
        if busy:
            self.progress.setMaximum(0)  # busy indicator until the first progress value
        self.pause_button.setText("Pause")

    def _toggle_pause(self) -> None:
        if self.worker.paused:
            self.worker.unpause()
            self.pause_button.setText("Pause")
        else:
            self.worker.pause()
            self.pause_button.setText("Resume")

    def _on_status(self, st: LibraryStatus) -> None:
        self.last_status = st
        files = st.files
        self.files_label.setText(f"{files:,} images indexed" if files else "No images yet")
        failed = st.failed
        self.failures_button.setVisible(bool(failed))
        self.failures_button.setText(f"{failed} failed — show")
        self.folders.set_folders([r.to_json() for r in st.roots])
        roots = [r.path for r in st.roots]
        offline = [r.path for r in st.roots if not r.online]
        self.model.set_offline_roots(offline)
        if self.watcher is not None:
            self.watcher.set_roots(roots) if self.settings.watch_folders else None
        self._update_page()

    def _on_encoder_ready(self, description: str, warning: str) -> None:
        # torch, Chroma and Qt are loaded now: move their millions of long-lived objects
        # out of the collector's sight, so a full collection (which stops every thread,
        # this one too) scans only what the app allocates from here on.
        gc.collect()
        gc.freeze()
        self.encoder_label.setText(description)
        self.has_text = self.library.encoder.has_text
        self.text_box.setEnabled(self.has_text)
        self.text_button.setEnabled(self.has_text)
        self.text_box.setPlaceholderText(
            "Describe a photo, e.g. a red dress"
            if self.has_text
            else "Text search needs a CLIP model (Settings → Encoder)"
        )
        self.text_box.setToolTip(
            ""
            if self.has_text
            else f"{description} has no text tower; choose a CLIP model in "
            "Settings to search by text."
        )
        if warning:
            self.statusBar().showMessage(warning, 15000)

    def show_failures(self) -> FailuresDialog:
        dialog = FailuresDialog(self.last_status.failures if self.last_status else (), self)
        dialog.show()
        return dialog

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: Any) -> None:
        old_model = self.settings.model
        for key, value in new.__dict__.items():
            setattr(self.settings, key, value)
        self.settings.save(self.library.dirs.settings_path)
        self.count_box.setValue(self.settings.top_k)
        if new.model != old_model:
            self.worker.submit(ReindexJob(new.model))
            self.statusBar().showMessage(
                f"Re-indexing with {new.model}; the current index "
                "keeps answering until it is done.",
                10000,
            )

    # -- geometry and quitting -------------------------------------------------------------
    def _qsettings(self) -> QSettings:
        return QSettings(str(self.library.dirs.config / "window.ini"), QSettings.Format.IniFormat)

    def _restore_geometry(self) -> None:
        qs = self._qsettings()
        geometry = qs.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Quit cleanly even mid-index: cancel, wait for the worker, drain the pool."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        self._qsettings().setValue("geometry", self.saveGeometry())
        self.settings.thumbnail_size = self.view.delegate.thumb_side
        self.settings.sort_order = self.sort_box.currentText()
        try:
            self.settings.save(self.library.dirs.settings_path)
        except OSError as exc:
            log.warning("could not save settings: %s", exc)
        self._rerun.stop()
        self.watcher.stop()
        self.worker.stop()
        for pool in (self.pool, self.image_pool):
            pool.clear()
            pool.waitForDone(10_000)
