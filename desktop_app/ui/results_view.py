"""The results grid: icon-mode list view with zoom (slider or Ctrl+wheel), a context menu
and drag-out of files. GUI thread only; what a menu entry leads to is a signal the window
passes to the controller. Open and Show in folder go through ``FileActions``, whose
failures reach the status bar as ``message``."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QWheelEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu, QWidget

from desktop_app.engine.search import SearchResult
from desktop_app.engine.settings import MAX_THUMBNAIL_SIZE, MIN_THUMBNAIL_SIZE
from desktop_app.ui.delegate import ResultDelegate
from desktop_app.ui.file_actions import FileActions
from desktop_app.ui.results_model import ResultsModel


class ResultsView(QListView):
    find_similar = Signal(object)  # SearchResult
    preview_requested = Signal(object)  # SearchResult
    copy_image_requested = Signal(str)  # path
    copy_path_requested = Signal(str)  # path (the window puts it on the clipboard and says so)
    zoom_changed = Signal(int)
    message = Signal(str)  # an action that could not be done (no application to open)

    def __init__(self, model: ResultsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("results")
        self.setModel(model)
        self.delegate = ResultDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setSpacing(4)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        # Double-click or Space: preview with the matched region; Enter: open the file.
        self.doubleClicked.connect(lambda idx: self.preview_requested.emit(self._result(idx.row())))
        self.viewport().installEventFilter(self)
        self.last_menu: QMenu | None = None
        self.files = FileActions(self)
        self.files.failed.connect(self.message)

    def results_model(self) -> ResultsModel:
        model = self.model()
        assert isinstance(model, ResultsModel)
        return model

    def _result(self, row: int) -> SearchResult:
        return self.results_model().result(row)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        index = self.currentIndex()
        if index.isValid() and event.key() == Qt.Key.Key_Space:
            self.preview_requested.emit(self._result(index.row()))
        elif index.isValid() and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if self._result(index.row()).here:
                self.files.open(self._result(index.row()).path)
        else:
            super().keyPressEvent(event)

    # -- zoom ----------------------------------------------------------------------------
    def set_thumb_size(self, side: int) -> None:
        side = max(MIN_THUMBNAIL_SIZE, min(MAX_THUMBNAIL_SIZE, side))
        if side != self.delegate.thumb_side:
            self.delegate.thumb_side = side
            self.doItemsLayout()
            self.zoom_changed.emit(side)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.Wheel
            and isinstance(event, QWheelEvent)
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            step = 16 if event.angleDelta().y() > 0 else -16
            self.set_thumb_size(self.delegate.thumb_side + step)
            return True
        return super().eventFilter(obj, event)

    # -- context menu -------------------------------------------------------------------
    def build_menu(self, row: int) -> QMenu:
        r = self._result(row)
        menu = QMenu(self)
        similar = QAction("Find similar" + (" (this region)" if r.region else ""), menu)
        similar.triggered.connect(lambda: self.find_similar.emit(r))
        similar.setEnabled(not self.results_model().is_gone(row))  # nothing left to search by
        menu.addAction(similar)
        menu.addSeparator()
        preview = QAction("Preview", menu)
        preview.triggered.connect(lambda: self.preview_requested.emit(r))
        menu.addAction(preview)
        for text, slot, needs_file in (
            ("Open", lambda: self.files.open(r.path), True),
            ("Show in folder", lambda: self.files.show_in_folder(r.path), True),
            ("Copy path", lambda: self.copy_path_requested.emit(r.path), False),
            ("Copy image", lambda: self.copy_image_requested.emit(r.path), True),
        ):
            action = QAction(text, menu)
            action.triggered.connect(slot)
            # another machine's photo opens only where its path exists here too
            action.setEnabled(r.here or not needs_file)
            menu.addAction(action)
        if not r.here:
            menu.addAction(QAction(f"(on {r.host}: not on this machine)", menu, enabled=False))
        menu.setDefaultAction(similar)
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        self.last_menu = self.build_menu(index.row())
        self.last_menu.popup(self.viewport().mapToGlobal(pos))

    def sizeHint(self) -> QSize:
        return QSize(800, 600)
