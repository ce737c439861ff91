"""Paints one grid cell: the thumbnail, the score, a match-kind badge and, for partial
matches, the matched region outlined on the thumbnail. GUI thread only (painting)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from desktop_app.ui.geometry import Region, fit_rect, region_to_drawn
from desktop_app.ui.results_model import Role

PARTIAL_COLOUR = QColor(255, 170, 0)
FULL_COLOUR = QColor(60, 160, 90)
WEAK_COLOUR = QColor(150, 130, 90)  # a region that only looks similar: muted
TEXT_HEIGHT = 34


class ResultDelegate(QStyledItemDelegate):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thumb_side = 160

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(self.thumb_side + 12, self.thumb_side + TEXT_HEIGHT + 12)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        rect = option.rect.adjusted(4, 4, -4, -4)
        palette = option.palette
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, palette.highlight())
        thumb_box = QRect(rect.left(), rect.top(), rect.width(), self.thumb_side)
        pixmap = index.data(Role.Thumbnail)
        result = index.data(Role.Result)
        gone = bool(index.data(Role.Gone))
        if gone:  # the file left the library: greyed, and badged below
            painter.setOpacity(0.35)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            target = fit_rect(pixmap.size(), thumb_box)
            painter.drawPixmap(target, pixmap)
            region = index.data(Role.Region)
            if region and result is not None and result.width:
                self._outline(painter, target, region, result.width, result.height)
        else:
            painter.fillRect(thumb_box, palette.alternateBase())
            painter.setPen(palette.placeholderText().color())
            painter.drawText(thumb_box, Qt.AlignmentFlag.AlignCenter, "…")
        painter.setOpacity(1.0)
        self._badge(
            painter,
            thumb_box,
            index.data(Role.Match),
            bool(index.data(Role.Offline)),
            getattr(result, "host", None),
            gone,
            bool(index.data(Role.Confirmed)),
        )
        text_box = QRect(rect.left(), thumb_box.bottom() + 4, rect.width(), TEXT_HEIGHT - 4)
        score = index.data(Role.Score)
        painter.setPen(
            palette.highlightedText().color()
            if option.state & QStyle.StateFlag.State_Selected
            else palette.text().color()
        )
        name = option.fontMetrics.elidedText(
            str(index.data()), Qt.TextElideMode.ElideMiddle, text_box.width()
        )
        painter.drawText(
            text_box,
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
            f"{score:.3f}\n{name}" if score is not None else name,
        )
        painter.restore()

    def _outline(
        self,
        painter: QPainter,
        target: QRect,
        region: Region,
        width: int,
        height: int,
    ) -> None:
        box = region_to_drawn(region, (width, height), target)
        if box is None:
            return
        painter.setPen(QPen(PARTIAL_COLOUR, 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(box.intersected(QRectF(target)))

    def _badge(
        self,
        painter: QPainter,
        box: QRect,
        match: str | None,
        offline: bool,
        host: str | None = None,
        gone: bool = False,
        confirmed: bool = False,
    ) -> None:
        labels = badge_labels(match, offline, confirmed, host, gone)
        font = QFont(painter.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        font.setBold(True)
        painter.setFont(font)
        x = box.left() + 4
        for text, colour in labels:
            w = painter.fontMetrics().horizontalAdvance(text) + 10
            badge = QRect(x, box.top() + 4, w, painter.fontMetrics().height() + 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(badge, 4, 4)
            painter.setPen(QColor("white"))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
            x += w + 4


def badge_labels(
    match: str | None,
    offline: bool,
    confirmed: bool,
    host: str | None = None,
    gone: bool = False,
) -> list[tuple[str, QColor]]:
    """The badges of one cell: a verified partial match (keypoints or colour layout
    agree) is told apart from a region that only looks similar to the embedding."""
    labels = []
    if gone:
        labels.append(("deleted", QColor(170, 60, 60)))
    if match == "partial":
        labels.append(
            ("verified partial", PARTIAL_COLOUR) if confirmed else ("similar region", WEAK_COLOUR)
        )
    elif match == "full":
        labels.append(("full", FULL_COLOUR))
    if offline:
        labels.append(("offline", QColor(120, 120, 120)))
    if host:  # indexed on another machine (shared store server)
        labels.append((f"on {host}", QColor(70, 90, 140)))
    return labels
