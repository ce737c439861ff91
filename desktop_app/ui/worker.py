"""The indexing worker: one long-lived thread that owns the encoder and is the only
writer to the catalog and the vector store.

Ownership:

- The worker thread (``index-worker``) is the window's only writer: every catalog and
  store write (indexing, forgetting a folder, syncing the store with the catalog when the
  encoder loads, the duplicate review's "not duplicates") and the swap to a new encoder
  (``Library.slot``) happen in ``_run``. A weights download runs here too and stops at
  its next chunk once ``cancel`` is set (by the user, or by ``stop`` at quit).
  Searches on pool threads only read (``engine/library.py``).
- Each job runs with the settings as they were when it was submitted: ``submit`` (GUI
  thread) takes a snapshot and the job reads only that, so a change in Settings on the
  GUI thread never reaches a job half-way.
- The GUI talks to it through a thread-safe job queue and three events (cancel, resume,
  stop); it answers with signals, queued to the GUI thread. A queued Qt signal would
  never reach it while it is busy, which is why control goes through events checked
  between files and batches. Jobs queued together run in one pass; ``cancel`` is
  cleared before each, so a cancel stops the job it was meant for only.
- Small jobs (the duplicate review's "not duplicates", one short catalog write) do not
  wait behind a long run: they go to their own queue, which this same thread drains
  between files of a running job, while it is paused, and between jobs. They stay on the
  one writer thread (no second writer), and the index run never yields inside a catalog
  transaction, so a mark written at that point cannot meet a half-written batch.
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

# clip_weights imports no torch (clip.py does: the worker module must not, at start)
from desktop_app.engine.duplicate_review import mark_not_duplicates
from desktop_app.engine.duplicates import DuplicateGroup
from desktop_app.engine.encoders.clip_weights import DownloadProgress, cancellable
from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.indexer import IndexSummary, Progress
from desktop_app.engine.library import EncoderSlot, Library
from desktop_app.engine.settings import Settings

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


@dataclass
class MarkNotDuplicatesJob:
    """The duplicate review's "Not duplicates": a catalog write, so the writer's."""

    group: DuplicateGroup


Job = IndexJob | ForgetJob | ReindexJob | LoadEncoderJob | MarkNotDuplicatesJob
Queued = tuple[Job, Settings]  # a job and the settings snapshot taken when it was submitted
# jobs that run between batches of a running job (or while it is paused), not after it
QUICK_JOBS = (MarkNotDuplicatesJob,)
_WAKE = "wake"  # put on the job queue to wake an idle loop for the quick queue


def describe_job(job: Job) -> str:
    """What a job does, for the message that says it failed."""
    if isinstance(job, LoadEncoderJob):
        return "Loading the encoder"
    if isinstance(job, ReindexJob):
        return f"Switching the encoder to {job.model}"
    if isinstance(job, ForgetJob):
        return f"Removing {job.folder} from the library"
    if isinstance(job, MarkNotDuplicatesJob):
        return "Marking a group as not duplicates"
    if not job.paths:
        return "Checking the library folders for changes"
    if job.add:
        return "Adding " + ", ".join(job.paths)
    return f"Indexing {len(job.paths)} changed file(s)"


class _LoopThread(QThread):
    def __init__(self, target: Any) -> None:
        super().__init__()
        self._target = target

    def run(self) -> None:
        self._target()


class IndexWorker(QObject):
    progress = Signal(object)  # Progress
    finished = Signal(object)  # IndexSummary
    failed = Signal(str)  # what failed and why, one line for the status bar
    status = Signal(object)  # LibraryStatus, after every job
    encoder_ready = Signal(str, str)  # description, warning ('' when none)
    encoder_failed = Signal(str)  # the encoder could not be loaded: why
    model_switched = Signal(str)  # a re-index for this model completed: it answers now
    switch_abandoned = Signal(str)  # a switch to this model failed or was cancelled
    not_duplicates_marked = Signal(object, str)  # DuplicateGroup, why it failed ('' if not)
    busy = Signal(bool)
    queue_length = Signal(int)

    def __init__(self, library: Library) -> None:
        super().__init__()
        self.library = library
        self._jobs: queue.Queue[Queued | str | None] = queue.Queue()
        self._quick: queue.SimpleQueue[Queued] = queue.SimpleQueue()
        self._wakes = 0  # _WAKE items on the job queue: not jobs, not counted as queued
        self._wakes_lock = threading.Lock()  # submit (GUI thread) and the loop change it
        # set by the controller: called on this worker's thread while weights download
        self.download_progress: DownloadProgress | None = None
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
        """Queue ``job`` with a snapshot of the library's settings as they are now. A
        quick job runs at the running job's next file, not after it (module doc)."""
        queued = (job, self.library.settings.snapshot())
        if isinstance(job, QUICK_JOBS):
            self._quick.put(queued)
            with self._wakes_lock:
                self._wakes += 1
            self._jobs.put(_WAKE)  # an idle loop runs it now; a busy one at its next file
            return
        self._jobs.put(queued)
        self.queue_length.emit(self._queued())

    def _queued(self) -> int:
        """Jobs waiting on the queue (the wake-ups for quick jobs are not jobs)."""
        with self._wakes_lock:
            return max(0, self._jobs.qsize() - self._wakes)

    def _took_wake(self) -> None:
        with self._wakes_lock:
            self._wakes -= 1

    def pause(self) -> None:
        self.resume.clear()

    def unpause(self) -> None:
        self.resume.set()

    def cancel_current(self) -> None:
        """Stop the running job after the batch in flight; queued jobs still run."""
        self.cancel.set()
        self.resume.set()

    def stop(self, timeout_ms: int = 30_000) -> bool:
        """Quit: cancel the running job, drop the queue, wait for the thread. False when
        it is still running after ``timeout_ms``: the library must then stay open."""
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
            first = self._jobs.get()
            if first is None or self._stopping.is_set():
                break
            self._run_quick()
            if isinstance(first, str):  # _WAKE: the quick jobs just ran
                self._took_wake()
                continue
            jobs = self._coalesce(first)
            self.queue_length.emit(self._queued())
            self.busy.emit(True)
            try:
                for job, settings in jobs:
                    # a cancel stops the job it was meant for, not the ones merged after it
                    self.cancel.clear()
                    # stop() sets _stopping before cancel: seen here, or cancel stays set
                    if self._stopping.is_set():
                        break
                    self._run_quick()
                    self._run_reporting(job, settings)
            finally:
                self.busy.emit(False)
            if not self._stopping.is_set():
                self._emit_status()

    def _run_reporting(self, job: Job, settings: Settings) -> None:
        """Run one job; a failure says which job failed, and the next job still runs."""
        try:
            self._run(job, settings)
        except DesktopAppError as exc:  # expected (a bad weights file): its own words
            reason = str(exc)
        except Exception as exc:  # the thread boundary: report, never die silently
            log.exception("%s failed", describe_job(job))
            reason = f"{type(exc).__name__}: {exc}"
        else:
            return
        # the message first: whoever waits on what follows finds it already said
        self.failed.emit(f"{describe_job(job)} failed: {reason}")
        if isinstance(job, LoadEncoderJob):
            self.encoder_failed.emit(reason)
        if isinstance(job, ReindexJob):
            self.switch_abandoned.emit(job.model)
        if isinstance(job, MarkNotDuplicatesJob):
            self.not_duplicates_marked.emit(job.group, reason)

    def _coalesce(self, first: Queued) -> list[Queued]:
        """Merge queued watcher jobs into one run: a burst of 1,000 copied files is one
        index pass, not a thousand. A newer encoder switch replaces a queued older one."""
        jobs: list[Queued] = [first]
        while True:
            try:
                nxt = self._jobs.get_nowait()
            except queue.Empty:
                return jobs
            if nxt is None:
                self._stopping.set()
                return jobs
            if isinstance(nxt, str):  # a wake for the quick queue: drained between jobs
                self._took_wake()
                continue
            job, last = nxt[0], jobs[-1][0]
            if (
                isinstance(job, IndexJob)
                and isinstance(last, IndexJob)
                and job.add == last.add
                and job.paths
                and last.paths
            ):
                last.paths = sorted(set(last.paths) | set(job.paths))
                jobs[-1] = (last, nxt[1])  # the newer settings
            elif isinstance(job, ReindexJob):
                jobs = [q for q in jobs if not isinstance(q[0], ReindexJob)] + [nxt]
            else:
                jobs.append(nxt)

    def _run_quick(self) -> None:
        """Run the quick jobs waiting now (this thread, between files or jobs)."""
        while not self._stopping.is_set():
            try:
                job, settings = self._quick.get_nowait()
            except queue.Empty:
                return
            self._run_reporting(job, settings)

    def _run(self, job: Job, settings: Settings) -> None:
        lib = self.library
        if isinstance(job, LoadEncoderJob):
            # loads (maybe downloads) the weights, off the GUI thread
            encoder = lib.slot.get(progress=self._download_progress())
            if self._stopping.is_set():  # a quit cancelled the download: nothing more
                return
            # the writer catches the store up with the catalog (a crash between the two
            # writes): searches never write, so this is where it happens
            lib.catch_up_store(lib.encoder_id, self.cancel)
            # Run the input shapes a query uses once (the query and its mirror; the query
            # windows), so the first real search does not pay the backend's first-call
            # cost for each shape — nor stall the window while it does.
            grey = Image.new("RGB", (64, 64), "grey")
            encoder.embed_images([grey, grey])
            encoder.embed_in_batches([grey] * 9)
            self.encoder_ready.emit(encoder.describe(), lib.slot.warning or "")
        elif isinstance(job, IndexJob):
            self._index(lib.index(job.paths, self.cancel, add=job.add, settings=settings))
        elif isinstance(job, ForgetJob):
            lib.forget(job.folder)
        elif isinstance(job, MarkNotDuplicatesJob):
            mark_not_duplicates(lib.catalog, job.group)
            self.not_duplicates_marked.emit(job.group, "")
        elif isinstance(job, ReindexJob):
            # a first-run CLIP download reports (and can be cancelled) through this
            slot = EncoderSlot(job.model, settings)
            slot.get(progress=self._download_progress())
            self._index(lib.index((), self.cancel, slot=slot, settings=settings))
            if lib.slot is slot:  # completed: the new encoder serves searches now
                self.encoder_ready.emit(slot.get().describe(), slot.warning or "")
                self.model_switched.emit(job.model)
            else:  # cancelled: the current encoder stays
                self.switch_abandoned.emit(job.model)

    def _download_progress(self) -> DownloadProgress:
        """The callback a weights download on this thread reports to: the window's
        monitor (its dialog can cancel), and it raises at the next chunk once the job is
        cancelled or the worker stops (``stop`` sets ``cancel``): a quit never waits for
        a 600 MB download to finish."""
        return cancellable(self.download_progress, self.cancel)

    def _index(self, run: Any) -> None:
        last = 0.0
        summary: IndexSummary | None = None
        for p in run:
            progress: Progress = p
            self._run_quick()  # between files: a "not duplicates" never waits for the run
            while not self.resume.wait(0.1):  # paused: hold between files
                self._run_quick()  # ... nor for the user to resume it
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
