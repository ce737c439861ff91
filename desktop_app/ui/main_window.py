"""The main window: the side panel (query and watched folders) on the left, the results
grid in the middle, the search tool bar above and indexing state in the status bar.

The window lays out those parts and connects them to the ``SearchController``, which owns
the flow and its state (queries, history, indexing, settings); dialogs open from here
because they need a parent window. It keeps only its own geometry. Everything here runs on
the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, SignalInstance
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.library import Library
from desktop_app.engine.search import SearchResult
from desktop_app.engine.status import LibraryStatus
from desktop_app.ui.controller import Page, SearchController
from desktop_app.ui.dialogs import FailuresDialog, SettingsDialog
from desktop_app.ui.preview import PreviewDialog
from desktop_app.ui.results_view import ResultsView
from desktop_app.ui.search_runner import Query
from desktop_app.ui.side_panel import SidePanel
from desktop_app.ui.statusbar import IndexStatusBar
from desktop_app.ui.toolbar import SearchToolBar

PAGE_EMPTY_LIBRARY, PAGE_NO_QUERY, PAGE_RESULTS, PAGE_NO_RESULTS = (
    Page.EMPTY_LIBRARY,
    Page.NO_QUERY,
    Page.RESULTS,
    Page.NO_RESULTS,
)


class MainWindow(QMainWindow):
    def __init__(self, library: Library, *, watch: bool = True) -> None:
        super().__init__()
        self.library = library
        self.setWindowTitle("desktop-app — image similarity search")
        self.resize(1280, 800)
        self.controller = c = SearchController(library, self)
        # the flow's objects, named here too for callers that drive the window
        self.model, self.searcher, self.worker = c.model, c.searcher, c.worker
        self.side = SidePanel()
        self.drop_zone, self.folders = self.side.drop_zone, self.side.folders
        self.view = ResultsView(self.model)
        self.view.set_thumb_size(c.thumb_size)
        c.set_thumb_size(self.view.delegate.thumb_side)  # as the view clamped it
        self.toolbar = SearchToolBar()
        self.toolbar.set_values(
            c.top_k, c.threshold, c.model.sort_order, self.view.delegate.thumb_side
        )
        self.addToolBar(self.toolbar)
        self.status_bar = IndexStatusBar()
        self.setStatusBar(self.status_bar)
        self.stack = QStackedWidget()
        for page in (
            _message_page(
                "Add a folder to start",
                "Choose a folder of photos; it is indexed in the background and watched "
                "for changes.",
                ("Add folder…", self.folders.choose_folder),
            ),
            _message_page(
                "Drop an image to search",
                "Drop or paste an image on the left, open one with Ctrl+O, or type a description.",
            ),
            self.view,
            _message_page(
                "No matches",
                "Nothing is similar enough. Lower the threshold or try another image.",
            ),
        ):
            self.stack.addWidget(page)
        splitter = QSplitter()
        splitter.addWidget(self.side)
        splitter.addWidget(self.stack)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([320, 960])
        self.setCentralWidget(splitter)
        self._connect()
        self._restore_geometry()
        c.start(watch=watch)

    # -- wiring: what the user does goes to the controller, what it reports to the parts
    def _connect(self) -> None:
        c, dz, tb, view, sb = (
            self.controller,
            self.drop_zone,
            self.toolbar,
            self.view,
            self.status_bar,
        )
        wiring: list[tuple[SignalInstance, Callable[..., object]]] = [
            (dz.images_dropped, lambda paths: c.search_file(paths[0])),
            (dz.folders_dropped, self._offer_folders),
            (dz.image_data_dropped, c.search_bytes),
            (dz.url_dropped, c.search_url),
            (dz.region_selected, c.search_region),
            (dz.rejected, lambda msg: sb.showMessage(msg, 6000)),
            (self.side.text_search, c.search_text),
            (self.folders.add_requested, c.add_folder),
            (self.folders.remove_requested, c.remove_folder),
            (tb.open_action.triggered, self.open_image_dialog),
            (tb.back_action.triggered, c.back),
            (tb.forward_action.triggered, c.forward),
            (tb.settings_action.triggered, self.open_settings),
            (tb.add_folder_action.triggered, self.folders.choose_folder),
            (tb.limits_changed, c.set_limits),
            (tb.sort_changed, c.set_sort_order),
            (tb.zoom_changed, view.set_thumb_size),
            (view.zoom_changed, tb.set_zoom),
            (view.zoom_changed, c.set_thumb_size),
            (view.find_similar, c.find_similar),
            (view.preview_requested, self.preview),
            (view.copy_image_requested, self.copy_image),
            (view.message, lambda text: sb.showMessage(text, 8000)),
            (sb.pause_clicked, c.toggle_pause),
            (sb.cancel_clicked, c.cancel_indexing),
            (sb.failures_clicked, self.show_failures),
            # the controller's reports
            (c.query_described, self.side.query_label.setText),
            (c.query_image, dz.show_image),
            (c.query_hint, dz.set_hint),
            (c.page_changed, self.stack.setCurrentIndex),
            (c.history_changed, tb.set_history),
            (c.limits_changed, lambda top_k, _threshold: tb.set_count(top_k)),
            (c.roots_changed, self.folders.set_folders),
            (c.counts_changed, sb.show_counts),
            (c.encoder_ready, self._encoder_ready),
            (c.encoder_failed, sb.set_encoder_failed),
            (c.message, sb.showMessage),
            (c.progress, sb.show_progress),
            (c.busy, sb.set_busy),
            (c.paused_changed, sb.set_paused),
            (c.queue_length, sb.set_queue_length),
        ]
        for signal, slot in wiring:
            signal.connect(slot)

    def _encoder_ready(self, description: str, has_text: bool) -> None:
        self.status_bar.set_encoder(description)
        self.side.set_text_search(has_text, description)

    # -- the flow, as callers outside the window know it ------------------------------
    @property
    def current(self) -> Query | None:
        return self.controller.current

    @property
    def last_status(self) -> LibraryStatus | None:
        return self.controller.last_status

    def search_file(self, path: Path | str) -> None:
        self.controller.search_file(path)

    def add_folder(self, folder: str) -> None:
        self.controller.add_folder(folder)

    # -- dialogs ----------------------------------------------------------------------
    def open_image_dialog(self) -> None:
        types = " ".join(f"*.{e}" for e in self.controller.settings.file_types)
        path, _ = QFileDialog.getOpenFileName(self, "Search by image", "", f"Images ({types})")
        if path:
            self.controller.search_file(path)

    def preview(self, result: SearchResult) -> PreviewDialog:
        dialog = PreviewDialog(result, self.controller.calls, self, self.view.files)
        dialog.find_similar.connect(self.controller.find_similar)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def copy_image(self, path: str) -> None:
        self.controller.copy_image(path, QApplication.clipboard().setImage)

    def _offer_folders(self, folders: list[Path]) -> None:
        for folder in folders:
            answer = QMessageBox.question(
                self, "Watch folder", f"Add {folder} to the library and watch it?"
            )
            if answer == QMessageBox.StandardButton.Yes:
                self.controller.add_folder(str(folder))

    def show_failures(self) -> FailuresDialog:
        dialog = FailuresDialog(self.last_status.failures if self.last_status else (), self)
        dialog.show()
        return dialog

    def open_settings(self) -> SettingsDialog:
        """Window-modal, not a nested event loop; deleted by Qt when closed, here on the
        GUI thread: left to Python's collector it could be freed on another thread."""
        dialog = SettingsDialog(self.controller.settings_for_dialog(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.controller.apply_settings(dialog.result_settings()))
        dialog.open()
        return dialog

    # -- geometry and quitting --------------------------------------------------------
    def _qsettings(self) -> QSettings:
        return QSettings(str(self.library.dirs.config / "window.ini"), QSettings.Format.IniFormat)

    def _restore_geometry(self) -> None:
        geometry = self._qsettings().value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> bool:
        """Quit cleanly even mid-index: the window's geometry, then the controller.
        False when a thread did not stop in time: the library must stay open."""
        if not self.controller.stopped:
            self._qsettings().setValue("geometry", self.saveGeometry())
            self.view.files.stop()
        return self.controller.shutdown()


def _message_page(
    title: str, text: str, button: tuple[str, Callable[[], None]] | None = None
) -> QWidget:
    """A centred title and explanation, maybe with one button: the grid's empty states."""
    page = QWidget()
    page.setObjectName(title)
    v = QVBoxLayout(page)
    v.addStretch(1)
    head = QLabel(f"<h2>{title}</h2>")
    body = QLabel(text)
    body.setWordWrap(True)
    for label in (head, body):
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        v.addWidget(label)
    if button is not None:
        b = QPushButton(button[0])
        b.clicked.connect(button[1])
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(b)
        row.addStretch(1)
        v.addLayout(row)
    v.addStretch(2)
    return page
