"""Thumbnails: decoded off the GUI thread, cached in memory (LRU) and on disk.

The disk cache is keyed by content fingerprint, so a renamed or moved photo keeps its
thumbnail. Workers produce QImage; the GUI thread turns each into a QPixmap once.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from desktop_app.engine.errors import ImageLoadError
from desktop_app.engine.imageio import load_image
from desktop_app.engine.thumbs import THUMB_SIDE, save_thumbnail, thumbnail_path
from desktop_app.ui.images import pil_to_qimage

log = logging.getLogger(__name__)

MEMORY_ITEMS = 2000
# At 320 px a thumbnail is ~300 KB decoded: 2,000 of them would hold ~600 MB for good
# (the soak grew by that much). The bytes cap keeps a few screens' worth; the disk cache
# brings the rest back in milliseconds.
MEMORY_BYTES = 160 * 2**20


class _Signals(QObject):
    loaded = Signal(str, QImage)  # key, image (null image: could not be read)


class _LoadTask(QRunnable):
    def __init__(self, key: str, path: str, cache_dir: Path, signals: _Signals) -> None:
        super().__init__()
        self.key, self.path, self.cache_dir, self.signals = key, path, cache_dir, signals
        self.cache_file = thumbnail_path(cache_dir, key)

    def run(self) -> None:
        image = QImage()
        if self.cache_file.is_file():
            image = QImage(str(self.cache_file))
        if image.isNull():
            try:
                loaded = load_image(self.path, max_side=THUMB_SIDE)
                image = pil_to_qimage(loaded.image)
                save_thumbnail(loaded.image, self.cache_dir, self.key)
            except ImageLoadError as exc:  # the user's file: the cell shows no thumbnail
                log.info("no thumbnail for %s: %s", self.path, exc.reason)
            except Exception:  # the thread boundary: never leave the key pending for ever
                log.exception("thumbnail for %s failed", self.path)
                image = QImage()
        try:
            self.signals.loaded.emit(self.key, image)
        except RuntimeError:
            pass  # the window closed while we worked


class ThumbnailCache(QObject):
    """``get`` returns a pixmap now or None and loads it; ``ready`` says when."""

    ready = Signal(str)  # key

    def __init__(self, cache_dir: Path, pool: QThreadPool, parent: QObject | None = None):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.pool = pool
        self._memory: OrderedDict[str, QPixmap] = OrderedDict()
        self.memory_bytes = 0  # decoded size of the pixmaps in _memory
        self._pending: set[str] = set()
        self._failed: set[str] = set()
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)

    @staticmethod
    def key_for(path: str, fingerprint: str) -> str:
        return fingerprint or hashlib.blake2b(path.encode(), digest_size=16).hexdigest()

    def get(self, key: str, path: str) -> QPixmap | None:
        pix = self._memory.get(key)
        if pix is not None:
            self._memory.move_to_end(key)
            return pix
        if key not in self._pending and key not in self._failed:
            self._pending.add(key)
            self.pool.start(_LoadTask(key, path, self.cache_dir, self._signals))
        return None

    def failed(self, key: str) -> bool:
        return key in self._failed

    @Slot(str, QImage)
    def _on_loaded(self, key: str, image: QImage) -> None:
        self._pending.discard(key)
        if image.isNull():
            self._failed.add(key)
        else:
            old = self._memory.pop(key, None)
            if old is not None:
                self.memory_bytes -= _size(old)
            pix = QPixmap.fromImage(image)
            self._memory[key] = pix
            self.memory_bytes += _size(pix)
            while len(self._memory) > 1 and (
                len(self._memory) > MEMORY_ITEMS or self.memory_bytes > MEMORY_BYTES
            ):
                self.memory_bytes -= _size(self._memory.popitem(last=False)[1])
        self.ready.emit(key)


def _size(pix: QPixmap) -> int:
    return pix.width() * pix.height() * max(1, pix.depth()) // 8
