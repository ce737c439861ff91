"""The window's newer features, wired in one place so ``MainWindow`` stays a layout:
the filter bar, the sort direction and "hide query file" controls, and the duplicate
review opened from the tool bar.

GUI thread only. The duplicate finder and trash moves run in the controller's finder
pool (one thread of its own), thumbnails in its image pool, "not duplicates" on the
indexing worker (see ``duplicates_view.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt

from desktop_app.ui.download import DownloadDialog, DownloadMonitor
from desktop_app.ui.duplicates_view import DuplicateReviewDialog, Trash
from desktop_app.ui.filter_bar import FilterBar

if TYPE_CHECKING:
    from desktop_app.ui.main_window import MainWindow


class WindowFeatures(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        c = window.controller
        self.filter_bar = FilterBar(list(c.settings.file_types), window)
        window.addToolBarBreak()
        window.addToolBar(self.filter_bar)
        self.filter_bar.set_folders(c.roots)
        # the finder's own one-thread pool (controller): searches never wait behind it
        self.finder_calls = c.finder_calls
        self.trash: Trash | None = None  # None: send2trash; tests put a stand-in here
        self.duplicates: DuplicateReviewDialog | None = None
        tb = window.toolbar
        self.filter_bar.filter_changed.connect(c.set_filter)
        c.roots_changed.connect(self.filter_bar.set_folders)
        tb.sort_reversed.connect(c.set_sort_reversed)
        tb.hide_query_file.connect(c.set_hide_query_file)
        tb.duplicates_action.triggered.connect(self.open_duplicates)
        window.side.set_cleanup(c.cleanup)
        window.side.cleanup_changed.connect(c.set_cleanup)
        # a CLIP download (chosen in Settings) reports here and can be cancelled
        self.download = DownloadMonitor(self)
        self.download_dialog: DownloadDialog | None = None
        c.worker.download_progress = self.download.report
        self.download.progressed.connect(self._download_progressed)
        c.encoder_ready.connect(self._download_over)

    def open_duplicates(self) -> DuplicateReviewDialog:
        """One review window at a time; a second click brings it forward."""
        if self.duplicates is not None and self.duplicates.isVisible():
            self.duplicates.raise_()
            self.duplicates.activateWindow()
            return self.duplicates
        c = self.window.controller
        dialog = DuplicateReviewDialog(
            c.library,
            self.finder_calls,
            c.calls,
            c.reindex_paths,
            self.window,
            self.trash,
            mark=c.mark_not_duplicates,
            cancel=c.finder_cancel(),
        )
        c.not_duplicates_marked.connect(dialog.marked)  # gone with the dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(self._closed)
        self.duplicates = dialog
        dialog.show()
        return dialog

    def _download_progressed(self, done: int, total: int, description: str) -> None:
        # every report comes through here, so none is lost before the dialog exists
        if self.download_dialog is None:
            self.download_dialog = DownloadDialog(self.download, self.window)
        self.download_dialog.show_progress(done, total, description)

    def _download_over(self) -> None:
        """The encoder loaded (downloaded, or the fallback after a cancel or a failure)."""
        if self.download_dialog is not None:
            self.download_dialog.close()
            self.download_dialog.deleteLater()
            self.download_dialog = None
        self.download.reset()

    def _closed(self) -> None:
        self.duplicates = None
