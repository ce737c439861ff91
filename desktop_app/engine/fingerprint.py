"""Content fingerprints: the identity of an image's bytes, whatever its path.

Files are opened with :func:`open_regular`: non-blocking, then checked to be a regular
file on the open descriptor, so a FIFO or device swapped in under an image's name
(after the scan looked) is refused at once instead of blocking the run forever.
Runs in the indexer's loader threads.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from desktop_app.engine.errors import ImageLoadError

CHUNK = 1 << 20
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs to block on


def open_regular(path: Path | str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file. ``ImageLoadError`` when it
    is a FIFO, device, socket or folder; ``OSError`` as usual when it cannot be opened."""
    from desktop_app.engine.scanner import not_regular_reason

    fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))
    try:
        reason = not_regular_reason(os.fstat(fd).st_mode)
        if reason is not None:
            raise ImageLoadError(path, reason)
        if _NONBLOCK:
            import fcntl

            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def fingerprint_file(path: Path | str) -> str:
    """BLAKE2b-128 of the whole file: a renamed or moved file keeps its fingerprint, a
    rewritten one gets a new one. hashlib releases the GIL, so loader threads overlap."""
    h = hashlib.blake2b(digest_size=16)
    with open_regular(path) as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
