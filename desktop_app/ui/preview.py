"""The preview: the full image with the matched region highlighted (double-click or
Space on a result); the arrow keys step to the previous or next result, Esc closes.

The widgets live on the GUI thread; the image is decoded in the image pool through
``BackgroundCalls`` and arrives back on the GUI thread as a QImage.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import shiboken6
from PySide6.QtCore import QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QPainter, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.search import SearchResult
from desktop_app.ui.delegate import PARTIAL_COLOUR
from desktop_app.ui.file_actions import FileActions
from desktop_app.ui.geometry import Region, fit_rect, region_to_drawn
from desktop_app.ui.images import LoadedQImage, load_qimage
from desktop_app.ui.results_model import match_label
from desktop_app.ui.tasks import BackgroundCalls

PREVIEW_SIDE = 2048


class RegionImage(QWidget):
    """An image scaled to fit, with a region (in the image's full-size pixels) outlined
    and the rest dimmed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.pixmap: QPixmap | None = None
        self.full_size = (0, 0)
        self.region: Region | None = None
        self.message = "Loading…"

    def set_image(self, image: QImage, full_size: tuple[int, int]) -> None:
        self.pixmap = QPixmap.fromImage(image)
        self.full_size = full_size
        self.update()

    def shown_rect(self) -> QRect:
        if self.pixmap is None:
            return QRect()
        return fit_rect(self.pixmap.size(), self.rect())

    def region_rect(self) -> QRectF | None:
        if self.pixmap is None or self.region is None:
            return None
        return region_to_drawn(self.region, self.full_size, self.shown_rect())

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 30, 30))
        if self.pixmap is None:
            p.setPen(QColor("white"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.message)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        shown = self.shown_rect()
        p.drawPixmap(shown, self.pixmap)
        box = self.region_rect()
        if box is not None:
            dim = QColor(0, 0, 0, 110)
            outside = QRectF(shown)
            for part in (
                QRectF(outside.left(), outside.top(), outside.width(), box.top() - outside.top()),
                QRectF(
                    outside.left(), box.bottom(), outside.width(), outside.bottom() - box.bottom()
                ),
                QRectF(outside.left(), box.top(), box.left() - outside.left(), box.height()),
                QRectF(box.right(), box.top(), outside.right() - box.right(), box.height()),
            ):
                if part.width() > 0 and part.height() > 0:
                    p.fillRect(part, dim)
            p.setPen(QPen(PARTIAL_COLOUR, 3))
            p.drawRect(box)

    def sizeHint(self) -> QSize:
        return QSize(900, 650)


class PreviewDialog(QDialog):
    """One result large; Left/Right step through the other results, Space or Esc close."""

    find_similar = Signal(object)  # SearchResult

    def __init__(
        self,
        result: SearchResult,
        calls: BackgroundCalls,
        parent: QWidget | None = None,
        files: FileActions | None = None,
        results: Sequence[SearchResult] = (),
    ) -> None:
        super().__init__(parent)
        self.calls = calls
        # the window's FileActions, so a failure reaches its status bar
        files = files or FileActions(self)
        # the results Left/Right step through (the grid's order); the shown one among them
        self.results = list(results) or [result]
        self.position = next((i for i, r in enumerate(self.results) if r == result), 0)
        if self.results[self.position] != result:
            self.results, self.position = [result], 0
        self.image = RegionImage()
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.similar_button = QPushButton("Find similar")
        open_button = QPushButton("Open")
        folder_button = QPushButton("Show in folder")
        for b in (self.similar_button, open_button, folder_button):
            buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
            b.setAutoDefault(False)  # Enter must not fire them; arrows step
        self.similar_button.clicked.connect(self._find_similar)
        open_button.clicked.connect(lambda: files.open(self.search_result.path))
        folder_button.clicked.connect(lambda: files.show_in_folder(self.search_result.path))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.info)
        layout.addWidget(buttons)
        self.resize(1000, 760)
        self._show(self.position)

    def _show(self, position: int) -> None:
        self.position = position
        # not ``self.result``: that would hide QDialog.result(), the dialog's exit code
        self.search_result = result = self.results[position]
        count = f" ({position + 1} of {len(self.results)})" if len(self.results) > 1 else ""
        self.setWindowTitle(Path(result.path).name + count)
        self.image.region = result.region if result.match == "partial" else None
        self.image.pixmap = None
        self.image.message = "Loading…"
        self.image.update()
        info = f"{result.path}\nsimilarity {result.score:.3f} · {match_label(result)}"
        if result.region:
            info += (
                f" · region x={result.region[0]} y={result.region[1]} "
                f"w={result.region[2]} h={result.region[3]}"
            )
        if len(self.results) > 1:
            info += "\n← → previous / next result · Esc closes"
        self.info.setText(info)
        self.similar_button.setText("Find similar" + (" (region)" if self.image.region else ""))
        wanted = result.path
        self.calls.call(
            lambda: load_qimage(wanted, max_side=PREVIEW_SIDE),
            lambda got: self._loaded(got, wanted),
            lambda msg: self._failed(msg, wanted),
        )

    def step(self, delta: int) -> None:
        """Show the previous (-1) or next (+1) result; stops at either end."""
        position = self.position + delta
        if 0 <= position < len(self.results) and position != self.position:
            self._show(position)

    def _loaded(self, got: LoadedQImage, path: str = "") -> None:
        if not shiboken6.isValid(self.image):  # closed (and deleted) before the image came
            return
        if path and path != self.search_result.path:
            return  # stepped on meanwhile: an older image must not replace the shown one
        self.image.set_image(got.image, got.full_size)

    def _failed(self, message: str, path: str = "") -> None:
        if not shiboken6.isValid(self.image):
            return
        if path and path != self.search_result.path:
            return
        self.image.message = message
        self.image.update()

    def _find_similar(self) -> None:
        self.find_similar.emit(self.search_result)
        self.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space:
            self.accept()
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up):
            self.step(-1)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Down):
            self.step(+1)
        else:
            super().keyPressEvent(event)  # Esc closes (QDialog rejects)
