"""The on-disk thumbnail cache, shared by the indexer (which writes a thumbnail while it
has the image decoded anyway) and the window (which reads them, and writes the missing).

Thumbnails are keyed by content fingerprint: a renamed or moved photo keeps its own.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

THUMB_SIDE = 320  # cached size; the grid scales down for smaller zoom levels


def thumbnail_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.jpg"


def save_thumbnail(image: Image.Image, cache_dir: Path, key: str) -> None:
    """Write a THUMB_SIDE thumbnail of ``image`` (RGB) unless one exists; atomic, so a
    reader never sees half a file. Failures are logged, never raised: a thumbnail is a
    convenience."""
    target = thumbnail_path(cache_dir, key)
    if target.exists():
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        thumb = image.copy()
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            thumb.save(fh, "JPEG", quality=85)
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("thumbnail cache: %s", exc)
