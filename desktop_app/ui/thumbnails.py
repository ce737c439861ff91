"""Thumbnails: decoded off the GUI thread, cached in memory (LRU) and on disk.

The disk cache is keyed by content fingerprint, so a renamed or moved photo keeps its
thumbnail. Workers produce QImage; the GUI thread turns each into a QPixmap once.

A file that could not be shown is remembered (so the grid does not decode it at every
repaint) in a bounded LRU with the file's identity (size, mtime, ctime) at that moment.
After ``RETRY_S`` the next ``get`` checks again in the pool: the file's identity is read
there (never on the GUI thread: it may be on a hung share) and it is decoded again only
if it changed (finished copying, repaired, permissions fixed) or could not be read.

Threads: ``ThumbnailCache`` and its dicts belong to the GUI thread; ``_LoadTask.run``
runs in the image pool and answers through a queued signal.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
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
MAX_FAILED = 5000  # files remembered as not showable; the oldest is forgotten (retried)
RETRY_S = 60.0  # a file that could not be shown is checked again after this long

Identity = tuple[int, int, int]  # size, mtime_ns, ctime_ns (chmod changes ctime)


@dataclass(frozen=True)
class _Failure:
    identity: Identity | None  # None: the file could not even be stat'ed
    at: float  # the cache's clock when it failed


def file_identity(path: str) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


class _Signals(QObject):
    # key, image (null image: could not be read), the file's identity when it failed
    loaded = Signal(str, QImage, object)


class _LoadTask(QRunnable):
    def __init__(
        self,
        key: str,
        path: str,
        cache_dir: Path,
        signals: _Signals,
        failed_as: Identity | None = None,
    ) -> None:
        super().__init__()
        self.key, self.path, self.cache_dir, self.signals = key, path, cache_dir, signals
        self.cache_file = thumbnail_path(cache_dir, key)
        self.failed_as = failed_as  # a re-check: the identity it failed with

    def run(self) -> None:
        if self.failed_as is not None and file_identity(self.path) == self.failed_as:
            self._answer(QImage())  # unchanged since it failed: no second decode
            return
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
        self._answer(image)

    def _answer(self, image: QImage) -> None:
        identity = file_identity(self.path) if image.isNull() else None
        try:
            self.signals.loaded.emit(self.key, image, identity)
        except RuntimeError:
            pass  # the window closed while we worked


class ThumbnailCache(QObject):
    """``get`` returns a pixmap now or None and loads it; ``ready`` says when."""

    ready = Signal(str)  # key

    def __init__(
        self,
        cache_dir: Path,
        pool: QThreadPool,
        parent: QObject | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.pool = pool
        self._clock = clock
        self.max_failed = MAX_FAILED
        self._memory: OrderedDict[str, QPixmap] = OrderedDict()
        self.memory_bytes = 0  # decoded size of the pixmaps in _memory
        self._pending: set[str] = set()
        self._failed: OrderedDict[str, _Failure] = OrderedDict()  # LRU, max_failed long
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
        if key in self._pending:
            return None
        failure = self._failed.get(key)
        if failure is not None:
            if self._clock() - failure.at < RETRY_S:
                return None  # shown as "no thumbnail" until the next check
            identity = failure.identity  # None: could not stat it, so decode again
        else:
            identity = None
        self._pending.add(key)
        self.pool.start(_LoadTask(key, path, self.cache_dir, self._signals, identity))
        return None

    def failed(self, key: str) -> bool:
        return key in self._failed

    @property
    def failed_count(self) -> int:
        return len(self._failed)

    @Slot(str, QImage, object)
    def _on_loaded(self, key: str, image: QImage, identity: Identity | None) -> None:
        self._pending.discard(key)
        if image.isNull():
            self._failed[key] = _Failure(identity, self._clock())
            self._failed.move_to_end(key)
            while len(self._failed) > self.max_failed:
                self._failed.popitem(last=False)  # forgotten: tried again when next shown
        else:
            self._failed.pop(key, None)
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
