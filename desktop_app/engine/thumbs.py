"""The on-disk thumbnail cache, shared by the indexer (which writes a thumbnail while it
has the image decoded anyway) and the window (which reads them, and writes the missing).

Thumbnails are keyed by content fingerprint: a renamed or moved photo keeps its own.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

THUMB_SIDE = 320  # cached size; the grid scales down for smaller zoom levels


def thumbnail_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.jpg"


def shrunk(image: Image.Image, side: int) -> Image.Image:
    """``image`` scaled to fit ``side`` × ``side`` by pixel-area averaging; an image that
    already fits is returned as it is (never enlarged). OpenCV's area resize takes
    ~0.3 ms where Pillow's filtered one took ~2.5 ms for a 0.2 MP photo: the indexer does
    this for every photo, on the cores the encoder needs."""
    w, h = image.size
    if max(w, h) <= side:
        return image
    size = _fitted(w, h, side)
    if image.mode not in ("RGB", "L"):
        return image.resize(size, Image.Resampling.BILINEAR)
    return Image.fromarray(cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA))


def _fitted(w: int, h: int, side: int) -> tuple[int, int]:
    """The size Pillow's ``Image.thumbnail((side, side))`` gives: the long side becomes
    ``side``, the short one is rounded down or up, whichever keeps the aspect better."""
    aspect = w / h
    if aspect >= 1:
        options = (math.floor(side / aspect), math.ceil(side / aspect))
        return side, max(1, min(options, key=lambda n: abs(aspect - side / n) if n else 1e9))
    options = (math.floor(side * aspect), math.ceil(side * aspect))
    return max(1, min(options, key=lambda n: abs(aspect - n / side))), side


def save_thumbnail(image: Image.Image, cache_dir: Path, key: str) -> None:
    """Write a THUMB_SIDE thumbnail of ``image`` (RGB) unless one exists; atomic, so a
    reader never sees half a file. Failures are logged, never raised: a thumbnail is a
    convenience."""
    target = thumbnail_path(cache_dir, key)
    if target.exists():
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        thumb = shrunk(image, THUMB_SIDE)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            thumb.save(fh, "JPEG", quality=85)
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("thumbnail cache: %s", exc)
