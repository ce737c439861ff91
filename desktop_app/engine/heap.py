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
later image buffers are carved out of an arena instead of being mapped, and their pages
stay with the process until the next trim (the window swung by 20-40 MB between trims).
Fixing the thresholds to stop that was tried and dropped: with blocks of 256 KB and up
mapped on their own, every decode, resize and numpy temporary paid fresh page faults,
and a search took 2.5 times as long (0.32 → 0.79 s at 400 images; the soak then
completed 1,533 searches in 30 min instead of 1,906); 1 MB still cost a third more.
So the trims (every 20 s) bound the swing, and :func:`tune_allocator` only caps the
arenas at two per core (glibc's default is eight), so fewer heaps hold free holes; that
costs no time (0.30 s).

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
M_ARENA_MAX = -8
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
    """Cap glibc's arenas (see the module's docstring). Returns whether it could; call it
    once, early (arenas already made stay)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # absent from musl
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, ARENAS_PER_CORE * (os.cpu_count() or 1)))
    if not done:
        log.debug("mallopt refused to cap the arenas")
    return done


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
