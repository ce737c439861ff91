"""The query panel: a drop zone that shows the query image and lets the user draw a
rectangle (rubber band) to search by a region of it.

Drops and pastes go through ``handle_mime``, which emits one signal per kind of input
(image files, folders, image bytes, a URL): tests build a QMimeData and call the handler
instead of simulating a native drag. (The open dialog is the window's: it searches the
chosen file directly.) GUI thread only: the query image arrives already decoded (the
controller loads it in the image pool).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QRubberBand, QSizePolicy, QWidget

from desktop_app.engine.scanner import is_image_name
from desktop_app.engine.settings import DEFAULT_FILE_TYPES
from desktop_app.ui.geometry import Region, drawn_to_region, fit_rect, region_to_drawn
from desktop_app.ui.images import qimage_to_png_bytes

IMAGE_EXTENSIONS = frozenset(DEFAULT_FILE_TYPES)
MIN_REGION_PX = 12


class DropZone(QWidget):
    images_dropped = Signal(list)  # list[Path]: image files
    folders_dropped = Signal(list)  # list[Path]: folders (offer to watch them)
    image_data_dropped = Signal(bytes, str)  # encoded image, label
    url_dropped = Signal(str)  # a remote image URL to fetch
    region_selected = Signal(tuple)  # (x, y, w, h) in the query image's pixels
    rejected = Signal(str)  # why a drop was not accepted

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setMinimumSize(QSize(220, 180))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip(
            "Drop an image here, paste one (Ctrl+V) or open one (Ctrl+O).\n"
            "Drag a rectangle on it to search by that region."
        )
        self._image: QImage | None = None
        self._pixmap: QPixmap | None = None
        self._region: Region | None = None
        self._full: tuple[int, int] = (0, 0)
        self._band = QRubberBand(QRubberBand.Shape.Rectangle, self)
        self._origin: QPoint | None = None
        self._hint = "Drop an image here\nor paste (Ctrl+V), open (Ctrl+O)"

    # -- the query image -------------------------------------------------------------
    def show_image(
        self,
        image: QImage | None,
        region: Region | None = None,
        full_size: tuple[int, int] | None = None,
    ) -> None:
        """Show ``image`` (maybe reduced); ``full_size`` is the original's size, the space
        regions are expressed in."""
        self._image = image if image is not None and not image.isNull() else None
        self._pixmap = QPixmap.fromImage(self._image) if self._image is not None else None
        if self._image is not None:
            self._full = full_size or (self._image.width(), self._image.height())
        self._region = region
        self._band.hide()
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def region(self) -> Region | None:
        return self._region

    def set_hint(self, text: str) -> None:
        self._hint = text
        self.update()

    # -- drops -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.handle_mime(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def handle_mime(self, mime: QMimeData) -> bool:
        """The one place drops and pastes are understood. Local files win, then image
        data (a browser drags the picture itself), then a remote URL to fetch."""
        files, folders, remote = [], [], []
        for url in mime.urls() if mime.hasUrls() else []:
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.is_dir():
                    folders.append(path)
                elif path.is_file():
                    files.append(path)
            elif url.scheme() in ("http", "https"):
                remote.append(url.toString())
        if not files and not folders and not remote and mime.hasText():
            text = mime.text().strip()
            if text.startswith(("http://", "https://")):
                remote.append(text.split()[0])
            elif text and Path(text).expanduser().is_file():
                files.append(Path(text).expanduser())
        if folders:
            self.folders_dropped.emit(folders)
        images = [f for f in files if is_image_name(f.name, IMAGE_EXTENSIONS)]
        if images:
            self.images_dropped.emit(images)
            return True
        if mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                self.image_data_dropped.emit(qimage_to_png_bytes(image), "pasted image")
                return True
        if remote:
            self.url_dropped.emit(remote[0])
            return True
        if files:
            self.rejected.emit(f"{files[0].name} is not an image this app can read")
            return False
        return bool(folders)

    # -- rubber band -----------------------------------------------------------------------
    def _image_rect(self) -> QRect:
        if self._pixmap is None:
            return QRect()
        return fit_rect(self._pixmap.size(), self.rect().adjusted(6, 6, -6, -6))

    def widget_to_image(self, rect: QRect) -> Region | None:
        """A rectangle on screen to (x, y, w, h) in the query image's own pixels."""
        if self._image is None:
            return None
        return drawn_to_region(rect, self._full, self._image_rect(), MIN_REGION_PX)

    def select_region(self, rect: QRect) -> None:
        """Search by the part of the query image under ``rect`` (widget coordinates)."""
        region = self.widget_to_image(rect)
        if region is not None:
            self._region = region
            self.update()
            self.region_selected.emit(region)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self._image is not None and event.button() == Qt.MouseButton.LeftButton:
            self._origin = event.position().toPoint()
            self._band.setGeometry(QRect(self._origin, QSize()))
            self._band.show()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._origin is not None:
            self._band.setGeometry(QRect(self._origin, event.position().toPoint()).normalized())

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._origin is not None:
            rect = QRect(self._origin, event.position().toPoint()).normalized()
            self._origin = None
            self._band.hide()
            self.select_region(rect)

    # -- painting ---------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        if self._pixmap is None:
            p.setPen(QPen(pal.mid().color(), 2, Qt.PenStyle.DashLine))
            p.drawRoundedRect(self.rect().adjusted(6, 6, -6, -6), 10, 10)
            p.setPen(pal.placeholderText().color())
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._hint)
            return
        shown = self._image_rect()
        p.drawPixmap(shown, self._pixmap)
        box = region_to_drawn(self._region, self._full, shown) if self._region else None
        if box is not None:
            p.setPen(QPen(QColor(255, 170, 0), 2))
            p.drawRect(box)
