"""Handing freed heap memory back to the system, for a process that runs for weeks.

glibc's allocator keeps freed memory inside its arenas for reuse and gives it back only
from the top of each heap. In the window, search threads, thumbnail decoders, the
indexer's pool and Chroma free many short-lived buffers, so the resident size crept up
for as long as searches ran (the soak, ``bench/soak.py``); ``malloc_trim(0)`` returns
every free page of every arena. Nothing here frees a live object: it only shrinks what
the process holds from the system.

:func:`tune_allocator` fixes glibc's thresholds. Untuned, glibc raises its mmap
threshold to the size of each large block freed (up to 32 MB), after which decoded
photos, grid thumbnails (~300 KB each) and numpy temporaries are carved out of the
arenas among small long-lived blocks, and the arenas grow with holes that no trim can
return. Tuned, blocks of ``MMAP_THRESHOLD`` (256 KB) and up are mapped on their own and
unmapped when freed, an arena's free top beyond ``TRIM_THRESHOLD`` goes back at once,
and the arenas are capped at two per core (glibc's default is eight). Searches do not
pay for it with page faults because keypoint matching allocates nothing large: the
compiled 2-NN works in place, and numpy's fallback reuses one set of work arrays per
thread (``regions._two_nearest_numpy``). :func:`heap_usage` reports what the arenas
hold and use (the soak records it).

Elsewhere than glibc (macOS, Windows, musl) there is nothing to call and this does
nothing. Any thread may call :func:`trim_heap` and :func:`heap_usage`; the window calls
``trim_heap`` from its GUI-thread collector (``ui/collector.py``) at most every 20 s,
and :func:`tune_allocator` once when that collector starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

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


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc's (the only one whose allocator this tunes)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim, mallopt = libc.malloc_trim, libc.mallopt  # absent from musl: AttributeError
    except (OSError, AttributeError):
        log.debug("not glibc: freed heap stays with the process")
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        libc.mallinfo2.restype = _MallInfo2
    return libc


@dataclass(frozen=True)
class HeapUsage:
    """What glibc's allocator holds from the system and what of it is in use, bytes."""

    arenas_held: int  # the arenas' size (free holes included)
    arenas_used: int  # blocks in use in the arenas
    mapped: int  # blocks mapped on their own (in use until freed, then unmapped)

    @property
    def used(self) -> int:
        """Everything allocated: a leak in C or C++ code grows it, fragmentation not."""
        return self.arenas_used + self.mapped

    @property
    def held(self) -> int:
        """Everything the allocator holds: fragmentation grows it too."""
        return self.arenas_held + self.mapped


def heap_usage() -> HeapUsage | None:
    """The allocator's figures (``mallinfo2``), or None where it cannot tell (not glibc,
    or glibc older than 2.33)."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    m = libc.mallinfo2()
    return HeapUsage(arenas_held=m.arena, arenas_used=m.uordblks, mapped=m.hblkhd)


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds and cap its arenas (see the module's
    docstring). Returns whether it could; call it once, early (arenas already made
    stay)."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    done = bool(mallopt(M_ARENA_MAX, ARENAS_PER_CORE * (os.cpu_count() or 1)))
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and done
    done = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and done
    if not done:
        log.debug("mallopt refused a setting")
    return done


def trim_heap() -> float | None:
    """Return freed heap pages to the system. Returns the seconds it took (ctypes lets
    other threads run meanwhile), or None where the C library has no way to."""
    libc = _glibc()
    if libc is None:
        return None
    started = time.perf_counter()
    libc.malloc_trim(0)
    return time.perf_counter() - started
