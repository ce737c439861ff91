"""Handing freed heap memory back to the system, for a process that runs for weeks.

glibc's allocator keeps memory that was freed inside its arenas (one per thread that
allocated, up to 8 per core) for reuse, and gives it back only from the top of each heap.
In the window, search threads, thumbnail decoders, the indexer's pool and Chroma free
many short-lived buffers; the soak (``bench/soak.py``) showed the resident size of a
search-only run climbing ~6 MB/min beyond its thumbnails, all of it gone after
``malloc_trim(0)``, which returns every free page of every arena. Nothing here frees a
live object: it only shrinks what the process holds from the system.

Between two trims, freed buffers still pile up: glibc raises its mmap threshold to the
size of each large block freed (up to 32 MB), so after the first decoded photo is freed,
every later image buffer (decoded photos, thumbnails, numpy copies: 0.2-40 MB each) is
carved out of an arena instead of being mapped, and its pages stay with the process when
freed. With a search every second the window's resident size swung by ~40 MB a minute.
:func:`tune_allocator` fixes the thresholds (which turns that adjustment off), so such
buffers are mapped and unmapped on their own and go back to the system as they are freed,
and caps the arenas at two per core (glibc's default is eight) so fewer heaps hold free
holes.

Elsewhere than glibc (macOS, Windows, musl) there is nothing to call and this does
nothing. Any thread may call :func:`trim_heap`; the window calls it from its GUI-thread
collector (``ui/collector.py``) at most every 20 s, and :func:`tune_allocator` once
when that collector starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_trim: Callable[[int], int] | None = None
_looked = False

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Blocks from this size up are mapped on their own (glibc's initial value, kept fixed):
# a 256×256 thumbnail's pixels and anything larger go back to the system when freed.
MMAP_THRESHOLD = 256 * 1024
# Free memory at the top of a heap beyond this is handed back at once (fixed as well).
TRIM_THRESHOLD = 1024 * 1024
ARENAS_PER_CORE = 2


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


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds and cap its arenas (see the module's
    docstring). Returns whether it could; call it once, early (arenas already made stay).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # absent from musl
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    arenas = ARENAS_PER_CORE * (os.cpu_count() or 1)
    done = [
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        mallopt(M_ARENA_MAX, arenas),
    ]
    if not all(done):
        log.debug("mallopt refused some of the allocator's settings: %s", done)
    return all(done)


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
