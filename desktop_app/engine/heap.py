"""Handing freed heap memory back to the system, for a process that runs for weeks.

glibc's allocator keeps memory that was freed inside its arenas (one per thread that
allocated, up to 8 per core) for reuse, and gives it back only from the top of each heap.
In the window, search threads, thumbnail decoders, the indexer's pool and Chroma free
many short-lived buffers; the soak (``bench/soak.py``) showed the resident size of a
search-only run climbing ~6 MB/min beyond its thumbnails, all of it gone after
``malloc_trim(0)``, which returns every free page of every arena. Nothing here frees a
live object: it only shrinks what the process holds from the system.

Elsewhere than glibc (macOS, Windows, musl) there is nothing to call and this does
nothing. Any thread may call it; the window calls it from its GUI-thread collector
(``ui/collector.py``) at most once a minute.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_trim: Callable[[int], int] | None = None
_looked = False


def _find_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # absent from musl: AttributeError
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap() -> float | None:
    """Return freed heap pages to the system. Returns the seconds it took (ctypes lets
    other threads run meanwhile), or None where the C library has no way to."""
    global _trim, _looked
    if not _looked:
        _trim, _looked = _find_trim(), True
        if _trim is None:
            log.debug("malloc_trim is not available here: freed heap stays with the process")
    if _trim is None:
        return None
    started = time.perf_counter()
    _trim(0)
    return time.perf_counter() - started
