"""Handing freed heap memory back to the system, for a process that runs for weeks.

glibc's allocator keeps memory that was freed inside its arenas (one per thread that
allocated, up to 8 per core) for reuse, and gives it back only from the top of each heap.
In the window, search threads, thumbnail decoders, the indexer's pool and Chroma free
many short-lived buffers; the soak (``bench/soak.py``) showed the resident size of a
search-only run climbing ~6 MB/min beyond its thumbnails, all of it gone after
``malloc_trim(0)``, which returns every free page of every arena. Nothing here frees a
live object: it only shrinks what the process holds from the system.

Between two trims, freed buffers still pile up, and trims alone did not keep the window
flat: glibc raises its mmap threshold to the size of each large block freed (up to
32 MB), so after the first decoded photo is freed, later image buffers, grid thumbnails
(~300 KB each, 160 MB of them churning in an LRU) and numpy temporaries are carved out
of the arenas among small long-lived blocks. The soak showed what that does: the C heap
in use stayed flat (``mallinfo2``), Python's blocks stayed flat, and the arenas' size and
the resident size after each trim still rose 2-3 MB/min for the whole 30 minutes.
:func:`tune_allocator` therefore fixes the thresholds: blocks of ``MMAP_THRESHOLD``
(256 KB) and up are mapped on their own and unmapped when freed, and an arena's free top
beyond ``TRIM_THRESHOLD`` goes back at once; it also caps the arenas at two per core
(glibc's default is eight), so fewer heaps hold free holes. That was tried once before
and dropped, because every search took 2.5 times as long: keypoint matching made ~18 MB
of fresh temporaries per candidate, each faulted in page by page. It now reuses one set
of work arrays per thread (``regions._two_nearest``), and a search by a 3 MP photo at
10,000 images takes the same time with the fixed thresholds as without (506-542 against
546-551 ms, all stages).

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
ARENAS_PER_CORE = 2
# Blocks this big or larger are mapped on their own and unmapped when freed: a grid
# thumbnail (~300 KB decoded), an image buffer, a decoded query. Below it, blocks come
# from the arenas. Fixed (glibc's own threshold climbs to 32 MB after the first large
# block is freed, and everything below then lands in the arenas).
MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 1024 * 1024  # free memory at an arena's top beyond this goes back at once


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
    docstring). Returns whether it could; call it once, early (arenas already made
    stay)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt  # absent from musl
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, ARENAS_PER_CORE * (os.cpu_count() or 1)))
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and done
    done = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and done
    if not done:
        log.debug("mallopt refused a setting")
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
