"""The indexing worker: one long-lived thread that owns the encoder and is the only
writer to the catalog and the vector store.

The GUI talks to it through a thread-safe job queue and three events (cancel, resume,
stop); it answers with signals. A queued Qt signal would never reach it while it is busy,
which is why control goes through events checked between files and batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, QThread, Signal

from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.indexer import IndexSummary, Progress
from desktop_app.engine.library import EncoderSlot, Library

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1


@dataclass
class IndexJob:
    paths: list[str] = field(default_factory=list)  # none: every library folder
    add: bool = True  # new library folders (False: changed paths from the watcher)


@dataclass
class ForgetJob:
    folder: str


@dataclass
class ReindexJob:
    model: str


@dataclass
class LoadEncoderJob:
    pass


Job = IndexJob | ForgetJob | ReindexJob | LoadEncoderJob


class _LoopThread(QThread):
    def __init__(self, target: Any) -> None:
        super().__init__()
        self._target = target

    def run(self) -> None:
        self._target()


class IndexWorker(QObject):
    progress = Signal(object)  # Progress
    finished = Signal(object)  # IndexSummary
    failed = Signal(str)
    status = Signal(object)  # LibraryStatus, after every job
    encoder_ready = Signal(str, str)  # description, warning ('' when none)
    busy = Signal(bool)
    queue_length = Signal(int)

    def __init__(self, library: Library) -> None:
        super().__init__()
        self.library = library
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self.cancel = threading.Event()
        self.resume = threading.Event()
        self.resume.set()
        self._stopping = threading.Event()
        # The loop blocks on the job queue, so the thread needs no event loop: a QThread
        # whose run() is the loop ends as soon as the loop returns.
        self._thread = _LoopThread(self._loop)
        self._thread.setObjectName("index-worker")

    # -- called from the GUI thread ---------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)
        self.queue_length.emit(self._jobs.qsize())

    def pause(self) -> None:
        self.resume.clear()

    def unpause(self) -> None:
        self.resume.set()

    def cancel_current(self) -> None:
        """Stop the running job after the batch in flight; queued jobs still run."""
        self.cancel.set()
        self.resume.set()

    def stop(self, timeout_ms: int = 30_000) -> bool:
        """Quit: cancel the running job, drop the queue, wait for the thread."""
        self._stopping.set()
        self.cancel.set()
        self.resume.set()
        self._jobs.put(None)
        return self._thread.wait(timeout_ms)

    @property
    def paused(self) -> bool:
        return not self.resume.is_set()

    # -- the worker thread ------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            job = self._jobs.get()
            if job is None or self._stopping.is_set():
                break
            jobs = self._coalesce(job)
            self.queue_length.emit(self._jobs.qsize())
            self.cancel.clear()
            self.busy.emit(True)
            try:
                for j in jobs:
                    self._run(j)
                    if self._stopping.is_set():
                        break
            except DesktopAppError as exc:
                self.failed.emit(str(exc))
            except Exception as exc:  # the thread boundary: report, never die silently
                log.exception("indexing job failed")
                self.failed.emit(f"{type(exc).__name__}: {exc}")
            finally:
                self.busy.emit(False)
            if not self._stopping.is_set():
                self._emit_status()

    def _coalesce(self, first: Job) -> list[Job]:
        """Merge queued watcher jobs into one run: a burst of 1,000 copied files is one
        index pass, not a thousand."""
        jobs: list[Job] = [first]
        while True:
            try:
                nxt = self._jobs.get_nowait()
            except queue.Empty:
                return jobs
            if nxt is None:
                self._stopping.set()
                return jobs
            last = jobs[-1]
            if (
                isinstance(nxt, IndexJob)
                and isinstance(last, IndexJob)
                and nxt.add == last.add
                and nxt.paths
                and last.paths
            ):
                last.paths = sorted(set(last.paths) | set(nxt.paths))
            else:
                jobs.append(nxt)

    def _run(self, job: Job) -> None:
        lib = self.library
        if isinstance(job, LoadEncoderJob):
            encoder = lib.encoder  # loads (maybe downloads) the weights, off the GUI thread
            # Run the input shapes a query uses once (the query and its mirror; the query
            # windows), so the first real search does not pay the backend's first-call
            # cost for each shape — nor stall the window while it does.
            grey = Image.new("RGB", (64, 64), "grey")
            encoder.embed_images([grey, grey])
            encoder.embed_in_batches([grey] * 9)
            self.encoder_ready.emit(encoder.describe(), lib.slot.warning or "")
        elif isinstance(job, IndexJob):
            self._index(lib.index(job.paths, self.cancel, add=job.add))
        elif isinstance(job, ForgetJob):
            lib.forget(job.folder)
        elif isinstance(job, ReindexJob):
            slot = EncoderSlot(job.model, lib.settings)
            slot.get()
            self._index(lib.index((), self.cancel, slot=slot))
            if lib.slot is slot:  # completed: the new encoder serves searches now
                self.encoder_ready.emit(slot.get().describe(), slot.warning or "")

    def _index(self, run: Any) -> None:
        last = 0.0
        summary: IndexSummary | None = None
        for p in run:
            progress: Progress = p
            while not self.resume.wait(0.1):  # paused: hold between files
                if self.cancel.is_set():
                    break
            now = time.monotonic()
            if progress.summary is not None:
                summary = progress.summary
            elif now - last >= PROGRESS_INTERVAL_S:
                last = now
                self.progress.emit(progress)
        if summary is not None:
            self.finished.emit(summary)

    def _emit_status(self) -> None:
        try:
            self.status.emit(self.library.status(load_encoder=self.library.slot.loaded))
        except Exception:
            log.exception("status failed")


def describe_summary(s: IndexSummary) -> str:
    parts = [f"{s.embedded} new", f"{s.reused} reused"]
    if s.removed:
        parts.append(f"{s.removed} removed")
    if s.failed:
        parts.append(f"{len(s.failed)} failed")
    state = "Indexing cancelled" if s.cancelled else "Indexed"
    return f"{state}: " + ", ".join(parts) + f" ({s.seconds:.1f} s)"
