"""Where an image is drawn and where a region of it lands: the one home for the geometry
the drop zone, the preview and the grid cells share.

A region is ``(x, y, w, h)`` in the full-size image's pixels (what the engine stores and
searches by); an image may be shown reduced, so every mapping goes through the drawn
rectangle and the full size. Pure functions on Qt value types; any thread may call them.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QRectF, QSize, Qt

Region = tuple[int, int, int, int]  # x, y, w, h in the full-size image's pixels


def fit_rect(size: QSize, box: QRect) -> QRect:
    """``size`` scaled to fit ``box`` keeping its aspect ratio, centred in ``box``."""
    scaled = size.scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
    return QRect(
        box.left() + (box.width() - scaled.width()) // 2,
        box.top() + (box.height() - scaled.height()) // 2,
        scaled.width(),
        scaled.height(),
    )


def region_to_drawn(region: Region, full_size: tuple[int, int], drawn: QRect) -> QRectF | None:
    """Where ``region`` of an image of ``full_size`` lies when the image fills ``drawn``;
    None when the full size is unknown (nothing to scale by)."""
    if full_size[0] <= 0 or full_size[1] <= 0:
        return None
    sx, sy = drawn.width() / full_size[0], drawn.height() / full_size[1]
    x, y, w, h = region
    return QRectF(drawn.left() + x * sx, drawn.top() + y * sy, w * sx, h * sy)


def drawn_to_region(
    rect: QRect, full_size: tuple[int, int], drawn: QRect, min_side: int = 1
) -> Region | None:
    """The inverse: the part of ``rect`` (widget coordinates) over the drawn image, in the
    full-size image's pixels; None when it misses the image or a side is under
    ``min_side`` image pixels."""
    r = rect.intersected(drawn)
    if r.width() < 3 or r.height() < 3 or drawn.width() <= 0 or drawn.height() <= 0:
        return None
    sx, sy = full_size[0] / drawn.width(), full_size[1] / drawn.height()
    x, y = round((r.left() - drawn.left()) * sx), round((r.top() - drawn.top()) * sy)
    w, h = round(r.width() * sx), round(r.height() * sy)
    if w < min_side or h < min_side:
        return None
    return x, y, w, h
