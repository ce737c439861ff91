"""Pillow <-> Qt image conversion and the one image loader the window's parts share.

QImage only: ``load_qimage`` and ``pil_to_qimage`` run on pool threads, where Qt allows
QImage but never QPixmap; the GUI thread turns the result into a pixmap.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage, QImageWriter

from desktop_app.engine.imageio import Source, load_image


@dataclass(frozen=True)
class LoadedQImage:
    image: QImage  # possibly reduced to fit max_side
    full_size: tuple[int, int]  # the original's width and height: the space regions are in


def load_qimage(source: Source, max_side: int | None = None) -> LoadedQImage:
    """Decode ``source`` (a file, encoded bytes) for display. Off the GUI thread only:
    it may decode a full-size photo. Raises ImageLoadError with a readable reason."""
    loaded = load_image(source, max_side=max_side)
    return LoadedQImage(pil_to_qimage(loaded.image), (loaded.width, loaded.height))


def pil_to_qimage(im: Image.Image) -> QImage:
    rgb = im.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    qimg = QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888)
    return qimg.copy()  # own the pixels: ``data`` is freed when we return


def qimage_to_png_bytes(image: QImage) -> bytes:
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    # QImageWriter rather than QImage.save: save's format argument is typed bytes in
    # the stubs but only a str is accepted at run time.
    QImageWriter(buf, QByteArray(b"PNG")).write(image)
    return bytes(buf.data().data())
