"""Python's garbage collector, run on the GUI thread only.

Left automatic, the collector runs on whichever thread happens to allocate when a
threshold is crossed: the indexing worker in the middle of building an encoder, a search
in the pool. A cycle that holds a Qt object (a dialog, a widget's Python wrapper) is then
destroyed on that thread, which Qt forbids; the window crashed that way when the encoder
was switched in Settings. So automatic collection is off while the window lives, and a
timer on the GUI thread collects each generation when its threshold is crossed (the
approach of qutebrowser and other long-lived PyQt applications). At most every 20 s
it also hands freed heap back to the system (``engine/heap.py``): without that the
window's resident size crept up for as long as searches ran; on start it fixes the
allocator's mmap and trim thresholds and caps its arenas (``heap.tune_allocator``).

Threads: collection runs on the GUI thread (the timer's); other threads only allocate.
The heap trim runs on a short-lived thread of its own ("heap-trim", one at a time): it
can take 150 ms on a large heap, a stutter the GUI thread should not show, and it
touches no Python object. That thread writes the trim counters under ``_lock``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from PySide6.QtCore import QObject, QTimer

from desktop_app.engine.heap import trim_heap, tune_allocator

log = logging.getLogger(__name__)

INTERVAL_MS = 500
# A trim takes 10-65 ms on its own thread; between two, what the threads freed in small
# blocks (SQLite pages, Chroma results, Python objects) piles up: 20-40 MB a minute
# with a search a second (the soak), so trim every 20 s rather than every minute.
TRIM_EVERY_S = 20.0


class GuiThreadCollector(QObject):
    """Owns garbage collection while it is started; ``stop`` gives it back to Python."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setObjectName("gc-collector")
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self.check)
        self._was_enabled = gc.isenabled()
        self.collections = 0
        self.trims = 0  # written by the trim thread, under _lock
        self.trim_seconds_max = 0.0
        self._lock = threading.Lock()
        self._trimmer: threading.Thread | None = None  # GUI thread only
        self._last_trim = time.monotonic()

    def start(self) -> None:
        tune_allocator()  # large blocks unmapped when freed; fewer arenas holding free holes
        gc.disable()
        self._timer.start()

    def stop(self, restore: bool = True) -> None:
        """Stop collecting; with ``restore`` give automatic collection back to Python
        (not while a thread of ours may still run: it would collect there again)."""
        self._timer.stop()
        self.wait_trimmed()
        if restore and self._was_enabled:
            gc.enable()

    def wait_trimmed(self, timeout: float = 5.0) -> bool:
        """Wait for a running heap trim to end; False if it is still running."""
        if self._trimmer is not None:
            self._trimmer.join(timeout)
            if self._trimmer.is_alive():
                return False
            self._trimmer = None
        return True

    def check(self) -> None:
        """Collect the oldest generation whose allocation count passed its threshold;
        every 20 s, return freed heap to the system too."""
        counts = gc.get_count()
        thresholds = gc.get_threshold()
        generation = -1
        for gen in range(3):
            if thresholds[gen] and counts[gen] > thresholds[gen]:
                generation = gen
            else:
                break
        if generation >= 0:
            gc.collect(generation)
            self.collections += 1
        due = time.monotonic() - self._last_trim >= TRIM_EVERY_S
        if due and (self._trimmer is None or not self._trimmer.is_alive()):
            self._last_trim = time.monotonic()
            self._trimmer = threading.Thread(target=self._trim, name="heap-trim", daemon=True)
            self._trimmer.start()

    def _trim(self) -> None:
        """On the trim thread."""
        took = trim_heap()
        if took is not None:
            with self._lock:
                self.trims += 1
                self.trim_seconds_max = max(self.trim_seconds_max, took)
            log.debug("heap trimmed in %.1f ms", took * 1000)
