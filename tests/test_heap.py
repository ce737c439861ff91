"""Freed heap goes back to the system: a window open for weeks must not keep every
buffer its threads ever freed (the soak's resident size crept up without it)."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
import textwrap

import pytest

from desktop_app.engine.heap import trim_heap

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def in_child(body: str) -> list[str]:
    """Run ``body`` in a child process (the allocator is the whole process's), with
    ``os``, ``trim_heap`` and ``rss_mb()`` at hand; its printed words."""
    script = (
        "import os\n"
        "from desktop_app.engine.heap import trim_heap\n"
        "def rss_mb():\n"
        "    pages = int(open('/proc/self/statm').read().split()[1])\n"
        "    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's; elsewhere nothing is called")
def test_freed_heap_is_returned_to_the_system() -> None:
    # a child process: this one's heap is shared with every other test
    out = in_child(
        """
        blocks = [bytearray(4000) for _ in range(50_000)]  # ~200 MB of malloc'd buffers
        keep = blocks[::25]  # one in 25 stays: the freed ones sit between live ones
        del blocks
        before = rss_mb()
        took = trim_heap()
        print(before, rss_mb(), took)
        """
    )
    before, after, took = float(out[0]), float(out[1]), float(out[2])
    assert before - after > 100  # most of the ~190 MB freed is handed back
    assert took >= 0


def test_trim_heap_is_harmless_to_call_repeatedly() -> None:
    first = trim_heap()
    assert (first is None) == (trim_heap() is None)  # available or not, consistently


def test_the_windows_collector_trims_at_most_once_a_minute(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from desktop_app.ui import collector as module

    c = module.GuiThreadCollector()
    c.check()
    assert c.wait_trimmed() and c.trims == 0  # not within the first minute
    monkeypatch.setattr(module, "TRIM_EVERY_S", 0.0)
    c.check()
    assert c.wait_trimmed()  # the trim runs on a thread of its own, off the GUI thread
    c.check()
    assert c.wait_trimmed()
    assert c.trims == (2 if GLIBC else 0)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere nothing is called")
def test_the_tuned_allocator_unmaps_large_blocks_when_freed() -> None:
    # a child process: the allocator's settings are the whole process's
    out = in_child(
        """
        from desktop_app.engine.heap import MMAP_THRESHOLD, tune_allocator
        assert tune_allocator()
        first = bytearray(8 * 2**20)  # untuned, glibc would now raise its mmap threshold
        del first
        images, keep = [], []
        for _ in range(60):  # ~120 MB of 2 MB buffers (decoded photos, thumbnails)
            images.append(bytearray(2 * 2**20))
            keep.append(bytearray(2000))  # small live blocks between them
        before = rss_mb()
        del images  # no trim: each was mapped on its own
        print(MMAP_THRESHOLD, before - rss_mb())
        """
    )
    threshold, returned = int(out[0]), float(out[1])
    assert threshold <= 2 * 2**20
    assert returned > 90  # the 120 MB freed went back at once


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's; elsewhere nothing is called")
def test_blocks_below_the_threshold_go_back_on_a_trim_when_tuned() -> None:
    out = in_child(
        """
        from desktop_app.engine.heap import MMAP_THRESHOLD, tune_allocator
        assert tune_allocator()
        size = MMAP_THRESHOLD // 2  # from the arenas, among small live blocks
        blocks, keep = [], []
        for _ in range(150 * 2**20 // size):
            blocks.append(bytearray(size))
            keep.append(bytearray(2000))
        del blocks
        before = rss_mb()
        trim_heap()
        print(before - rss_mb())
        """
    )
    assert float(out[0]) > 100  # most of the ~150 MB freed went back on the trim


def test_heap_usage_reports_what_the_allocator_holds() -> None:
    from desktop_app.engine.heap import heap_usage

    usage = heap_usage()
    if not GLIBC or not hasattr(ctypes.CDLL(None), "mallinfo2"):  # glibc < 2.33 has none
        assert usage is None
        return
    assert usage is not None
    assert 0 < usage.arenas_used <= usage.arenas_held
    assert usage.used <= usage.held
    out = in_child(
        """
        from desktop_app.engine.heap import heap_usage, tune_allocator
        tune_allocator()
        before = heap_usage()
        big = bytearray(8 * 2**20)  # over the mmap threshold: mapped on its own
        during = heap_usage()
        del big
        after = heap_usage()
        print(during.mapped - before.mapped, after.mapped - before.mapped)
        """
    )
    assert int(out[0]) >= 8 * 2**20 and int(out[1]) == 0
