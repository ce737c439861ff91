"""Pillow <-> Qt image conversion. QImage only: off the GUI thread Qt allows QImage,
never QPixmap."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QBuffer, QIODevice
from PySide6.QtGui import QImage


def pil_to_qimage(im: Image.Image) -> QImage:
    rgb = im.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    qimg = QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888)
    return qimg.copy()  # own the pixels: ``data`` is freed when we return


def qimage_to_png_bytes(image: QImage) -> bytes:
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return bytes(buf.data().data())
