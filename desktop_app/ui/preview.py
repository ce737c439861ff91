"""The preview: the full image with the matched region highlighted (double-click or
Space on a result).

The widgets live on the GUI thread; the image is decoded in the image pool through
``BackgroundCalls`` and arrives back on the GUI thread as a QImage.
"""

from __future__ import annotations

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
    find_similar = Signal(object)  # SearchResult

    def __init__(
        self,
        result: SearchResult,
        calls: BackgroundCalls,
        parent: QWidget | None = None,
        files: FileActions | None = None,
    ) -> None:
        super().__init__(parent)
        # the window's FileActions, so a failure reaches its status bar
        files = files or FileActions(self)
        # not ``self.result``: that would hide QDialog.result(), the dialog's exit code
        self.search_result = result
        self.setWindowTitle(Path(result.path).name)
        self.image = RegionImage()
        self.image.region = result.region if result.match == "partial" else None
        info = f"{result.path}\nsimilarity {result.score:.3f} · {result.match} match"
        if result.region:
            info += (
                f" · region x={result.region[0]} y={result.region[1]} "
                f"w={result.region[2]} h={result.region[3]}"
            )
        label = QLabel(info)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        similar = QPushButton("Find similar" + (" (region)" if self.image.region else ""))
        open_button = QPushButton("Open")
        folder_button = QPushButton("Show in folder")
        for b in (similar, open_button, folder_button):
            buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
        similar.clicked.connect(self._find_similar)
        open_button.clicked.connect(lambda: files.open(result.path))
        folder_button.clicked.connect(lambda: files.show_in_folder(result.path))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addWidget(label)
        layout.addWidget(buttons)
        self.resize(1000, 760)

        calls.call(
            lambda: load_qimage(result.path, max_side=PREVIEW_SIDE), self._loaded, self._failed
        )

    def _loaded(self, got: LoadedQImage) -> None:
        if shiboken6.isValid(self.image):  # closed (and deleted) before the image came
            self.image.set_image(got.image, got.full_size)

    def _failed(self, message: str) -> None:
        if not shiboken6.isValid(self.image):
            return
        self.image.message = message
        self.image.update()

    def _find_similar(self) -> None:
        self.find_similar.emit(self.search_result)
        self.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            self.accept()
        else:
            super().keyPressEvent(event)
