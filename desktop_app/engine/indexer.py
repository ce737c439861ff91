"""The incremental indexer: scan, fingerprint, embed what is new, forget what is gone.

A file whose size and mtime are unchanged is skipped without reading it. Otherwise its
content is fingerprinted; content that already has vectors (a renamed, moved or copied
file) reuses them, new content is decoded in loader threads while the encoder works on
the previous batch, and the encoder works on the next batch while this one is written
(a pipeline limited by its slowest stage: ``bench/bench_pipeline.py``). Each batch is
written in one catalog transaction followed by one vector-store upsert, so a crash loses
at most the two batches in flight.

It is a generator of :class:`Progress` values; the caller (CLI or UI worker thread) owns
the thread it runs on, which is the only writer (the loader threads only read files and
decode, at a lower CPU priority than the encoder on Linux in a process without a window;
the one encoder thread only computes vectors). Setting ``cancel`` stops it
between files and batches; what was written stays.

Nothing is removed from the catalog on the strength of an absence the scan cannot vouch
for: a library folder that is missing, or an empty folder where the catalog had files
(the mount point of an unplugged drive), is offline; a subfolder that cannot be listed
keeps its entries. The offline check runs again after the scan, before anything is
removed: a drive unplugged during the scan leaves a scan that found nothing. A full
disk stops the run with :class:`DiskFull`; the batches written before it stay.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from desktop_app.engine.analysis import Analyser, Analysis, Prepared
from desktop_app.engine.catalog import Catalog, FileRow, VectorRow
from desktop_app.engine.errors import ImageLoadError
from desktop_app.engine.fingerprint import fingerprint_file
from desktop_app.engine.headless import is_headless
from desktop_app.engine.imageio import load_image, read_header
from desktop_app.engine.scanner import FoundFile, is_within, scan
from desktop_app.engine.store import VectorStore
from desktop_app.engine.vector_ids import vector_id, vector_metadata

log = logging.getLogger(__name__)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 2


# Decoding (Pillow, OpenCV: both release the GIL) in a pool sized to the CPUs this
# process may use, at least 2 so one file's read overlaps another's decode; capped,
# since the encoder needs the same cores.
LOADER_THREADS = min(8, max(2, _usable_cpus()))
# Prepared images in flight per loader thread. 16 held more decoded images than the
# encoder needs to stay busy: indexing 600 photos with regions (ViT-B-32 + EfficientNet
# regions, quiet machine) peaked at 0.927 GB at 16, 0.904 at 8, 0.874 at 6 (rclip: 0.909)
# at the same 14.2 images/s; at 4 it lost 6-17 % of its speed.
LOOKAHEAD_PER_THREAD = 6
REUSE_FLUSH_EVERY = 256


@dataclass
class IndexSummary:
    seen: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # folders that could not be listed
    cancelled: bool = False
    seconds: float = 0.0
    # With a store server: what is still waiting for upload (kept in the catalog), and
    # why it could not go up.
    unsynced: int = 0
    store_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "reused": self.reused,
            "removed": self.removed,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "offline": self.offline,
            "unlisted": self.unlisted,
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 3),
            "unsynced": self.unsynced,
            "store_error": self.store_error,
        }


class Phase(StrEnum):
    """Where an indexing pass is; a ``StrEnum`` so it prints as the word shown to users."""

    SCANNING = "scanning"  # walking the folders
    INDEXING = "indexing"  # hashing, decoding and embedding new or changed files
    CLEANING = "cleaning"  # dropping entries of files that are gone
    DONE = "done"  # the last value of a pass; it carries the summary


@dataclass(frozen=True)
class Progress:
    phase: Phase
    done: int
    total: int
    current: str | None
    embedded: int
    reused: int
    failed: int
    summary: IndexSummary | None = None
    store_error: str | None = None  # a store server that does not answer (uploads wait)


@dataclass
class _Hashed:  # content already has vectors: reuse them
    fingerprint: str
    width: int
    height: int
    taken: str


@dataclass
class _Failed:
    fingerprint: str | None
    reason: str


@dataclass
class _Embedding:  # a batch on the encoder thread, and the rows written with it
    batch: list[tuple[Prepared, FoundFile, str]]
    rows: list[FileRow]
    future: Future[list[Analysis]] | None

    @property
    def ready(self) -> bool:
        return self.future is None or self.future.done()


@dataclass(frozen=True)
class IndexTarget:
    """A folder (or file) to scan and the library root its files belong to."""

    folder: Path
    root: str


class Indexer:
    def __init__(
        self,
        catalog: Catalog,
        store: VectorStore,
        analyser_factory: Callable[[], Analyser],
        encoder_id: str,
        *,
        extensions: Iterable[str],
        max_megapixels: float,
        skip_dirs: Sequence[Path] = (),
        cancel: threading.Event | None = None,
        required_features: Sequence[str] = (),
        publish: Callable[[Sequence[Analysis]], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self._analyser_factory = analyser_factory
        self._analyser: Analyser | None = None
        self.encoder_id = encoder_id
        self.extensions = list(extensions)
        self.max_megapixels = max_megapixels
        self.skip_dirs = skip_dirs
        self.cancel = cancel or threading.Event()
        # A content is complete when it has a full vector and each of these features
        # (e.g. keypoints once region matching is on); incomplete ones are analysed again.
        self.required_features = tuple(required_features)
        # What follows each catalog write: the embedded index is written at once; a
        # store server gets the catalog's unsynced marks uploaded (shared.Uploader).
        self.publish = publish or (lambda a: write_to_store(self.store, self.encoder_id, a))
        self._claim_lock = threading.Lock()
        self._analyser_lock = threading.Lock()

    @property
    def analyser(self) -> Analyser:
        """Built on first need: a run with nothing new never loads the model."""
        with self._analyser_lock:  # loader threads may ask at the same moment
            if self._analyser is None:
                self._analyser = self._analyser_factory()
            return self._analyser

    # -- the run ---------------------------------------------------------------------
    def run(self, targets: Sequence[IndexTarget]) -> Iterator[Progress]:
        started = time.monotonic()
        s = IndexSummary()
        self._summary = s
        yield Progress(Phase.SCANNING, 0, 0, None, 0, 0, 0)
        known = self.catalog.fingerprints_with_vectors(self.encoder_id)
        for kind in self.required_features:
            known &= self.catalog.fingerprints_with_feature(kind)
        found: dict[str, tuple[FoundFile, str]] = {}
        scanned: list[IndexTarget] = []
        self._unlisted: list[str] = []
        for target in targets:
            if self._offline(target.root):
                # an unplugged drive or unmounted share: keep its entries for its return
                if target.root not in s.offline:
                    s.offline.append(target.root)
                log.warning("%s is not reachable; its entries are kept", target.root)
                continue
            scanned.append(target)  # a missing sub-path under a live root was deleted
            if os.path.lexists(target.folder):
                for f in scan(target.folder, self.extensions, self.skip_dirs, self._unlisted):
                    found[f.path] = (f, target.root)
        for target in self._gone_during_scan(scanned, s):
            # its files could not be stat'ed once it went: those are not failures
            scanned.remove(target)
            found = {p: fr for p, fr in found.items() if fr[1] != target.root}
        s.unlisted = list(self._unlisted)
        s.seen = len(found)
        todo = self._changed(found, known, s)
        yield from self._process(todo, known, s)
        if not self.cancel.is_set():
            yield Progress(
                Phase.CLEANING, len(todo), len(todo), None, s.embedded, s.reused, len(s.failed)
            )
            s.removed = self._remove_missing(scanned, found, s)
        s.cancelled = self.cancel.is_set()
        s.seconds = time.monotonic() - started
        yield Progress(
            Phase.DONE, len(todo), len(todo), None, s.embedded, s.reused, len(s.failed), s
        )

    def _offline(self, root: str) -> bool:
        """A root that is missing, or an empty folder where the catalog has files: an
        unplugged drive leaves its mount point behind, empty."""
        path = Path(root)
        if not path.exists():
            return True
        if not path.is_dir():
            return False
        try:
            with os.scandir(path) as it:
                empty = next(it, None) is None
        except OSError:
            return False  # unlistable: the scan reports it and keeps its entries
        return empty and bool(self.catalog.files_in(root))

    def _changed(
        self, found: dict[str, tuple[FoundFile, str]], known: set[str], s: IndexSummary
    ) -> list[tuple[FoundFile, str]]:
        """Files to look at: new, changed, failed before, or without vectors for us."""
        todo = []
        rows: dict[str, FileRow] = {}
        for folder in {root for _, root in found.values()}:
            rows.update(self.catalog.files_in(folder))
        for path, (f, root) in found.items():
            row = rows.get(path)
            if (
                row is not None
                and row.ok
                and row.size == f.size
                and row.mtime_ns == f.mtime_ns
                and row.fingerprint in known
                and row.root == root
                and row.taken is not None  # else: a row from before format 3, header unread
            ):
                s.unchanged += 1
            else:
                todo.append((f, root))
        return todo

    def _process(
        self, todo: list[tuple[FoundFile, str]], known: set[str], s: IndexSummary
    ) -> Iterator[Progress]:
        claimed: set[str] = set()
        batch: list[tuple[Prepared, FoundFile, str]] = []
        pending_rows: list[FileRow] = []
        done = 0
        total = len(todo)

        def prepare(item: tuple[FoundFile, str]) -> Prepared | _Hashed | _Failed:
            return self._prepare(item[0], known, claimed)

        # One encoder thread embeds batch k+1 while this thread writes batch k: the
        # writes (catalog transaction, Chroma upsert: mostly waiting on the disk) leave
        # the encoder's critical path. This thread stays the only writer; the encoder
        # thread only computes. At most two batches are in flight, so a crash loses at
        # most those.
        with ThreadPoolExecutor(1, thread_name_prefix="encoder") as encoding:
            in_flight: _Embedding | None = None
            for (f, root), result in _pipelined(prepare, todo, self.cancel):
                if isinstance(result, Prepared):
                    batch.append((result, f, root))
                elif isinstance(result, _Hashed):
                    s.reused += 1
                    done += 1
                    size = (result.width, result.height)
                    pending_rows.append(
                        file_row(f, root, result.fingerprint, size, taken=result.taken)
                    )
                elif result.fingerprint is None and self._went_offline(root, s):
                    done += 1  # unreadable because its drive went: kept as it was, not failed
                else:
                    done += 1
                    s.failed.append((f.path, result.reason))
                    pending_rows.append(file_row(f, root, result.fingerprint, None, result.reason))
                if in_flight is not None and in_flight.ready:  # written as soon as it can be
                    done += self._write(in_flight, s)
                    in_flight = None
                full = bool(batch) and len(batch) >= self.analyser.encoder.batch_size
                if full or len(pending_rows) >= REUSE_FLUSH_EVERY:
                    started = self._start_embedding(encoding, batch, pending_rows)
                    if in_flight is not None:
                        done += self._write(in_flight, s)
                    in_flight = started
                    batch, pending_rows = [], []
                yield Progress(
                    Phase.INDEXING, done, total, f.path, s.embedded, s.reused, len(s.failed)
                )
            if in_flight is not None and (batch or pending_rows):
                # written and reported first: a cancel asked for on seeing it skips the
                # last partial batch (the next run does it) instead of embedding it
                done += self._write(in_flight, s)
                in_flight = None
                yield Progress(
                    Phase.INDEXING, done, total, None, s.embedded, s.reused, len(s.failed)
                )
            if (batch or pending_rows) and not self.cancel.is_set():
                in_flight = self._start_embedding(encoding, batch, pending_rows)
            if in_flight is not None:
                done += self._write(in_flight, s)
                yield Progress(
                    Phase.INDEXING, done, total, None, s.embedded, s.reused, len(s.failed)
                )

    def _prepare(
        self, f: FoundFile, known: set[str], claimed: set[str]
    ) -> Prepared | _Hashed | _Failed:
        """Runs in a loader thread: fingerprint, then decode only if the content is new."""
        if f.error is not None:
            return _Failed(None, f.error)
        try:
            fp = fingerprint_file(f.path)
        except ImageLoadError as exc:  # not a regular file any more (swapped since the scan)
            return _Failed(None, exc.reason)
        except OSError as exc:
            reason = (
                "permission denied: the file cannot be read"
                if isinstance(exc, PermissionError)
                else f"cannot read file ({exc.strerror or exc})"
            )
            return _Failed(None, reason)
        try:
            with self._claim_lock:
                first = fp not in known and fp not in claimed
                if first:
                    claimed.add(fp)
            if not first:
                return _Hashed(fp, *read_header(f.path))
            analyser = self.analyser  # built by the first loader to need it, if none has
            _yield_to_encoder()
            loaded = load_image(
                f.path, max_side=analyser.decode_side, max_megapixels=self.max_megapixels
            )
            return analyser.prepare(fp, loaded)
        except ImageLoadError as exc:
            return _Failed(fp, exc.reason)
        except Exception as exc:  # a decoder bug must cost one file, not the run
            log.exception("unexpected error reading %s", f.path)
            return _Failed(fp, f"unexpected error: {type(exc).__name__}: {exc}")

    def _start_embedding(
        self,
        encoding: ThreadPoolExecutor,
        batch: list[tuple[Prepared, FoundFile, str]],
        rows: list[FileRow],
    ) -> _Embedding:
        """Hand a batch to the encoder thread (nothing to embed: no thread needed)."""
        future: Future[list[Analysis]] | None = None
        if batch:
            analyser = self.analyser  # built here, on the indexing thread
            future = encoding.submit(analyser.embed, [p for p, _, _ in batch])
        return _Embedding(batch, rows, future)

    def _write(self, job: _Embedding, s: IndexSummary) -> int:
        """Wait for a batch's vectors and write it: catalog first (the source of truth),
        then the index. Returns how many files of the batch are now done."""
        batch, rows = job.batch, job.rows
        analyses: list[Analysis] = []
        embedded = batch
        if job.future is not None:
            try:
                analyses = job.future.result()
            except Exception as exc:
                log.exception("encoder failed on a batch")
                reason = f"encoder error: {type(exc).__name__}: {exc}"
                for p, f, root in batch:
                    s.failed.append((f.path, reason))
                    rows.append(file_row(f, root, p.fingerprint, None, reason))
                embedded = []
        file_rows = [
            file_row(f, root, p.fingerprint, (p.width, p.height), taken=p.taken)
            for p, f, root in embedded
        ]
        with self.catalog.transaction() as db:
            for a in analyses:
                self.catalog.put_vectors(self.encoder_id, a.vectors, db)
                for kind, data in a.features.items():
                    self.catalog.put_feature(a.fingerprint, kind, data, db)
            self.catalog.put_files(file_rows + rows, db)
        self.publish(analyses)
        s.embedded += len(analyses)
        return len(batch)

    def _gone_during_scan(
        self, scanned: Sequence[IndexTarget], s: IndexSummary
    ) -> list[IndexTarget]:
        """Targets whose root went offline while it was scanned (an unplugged drive)."""
        gone = []
        for target in scanned:
            if self._offline(target.root):
                if target.root not in s.offline:
                    s.offline.append(target.root)
                log.warning("%s went away during the scan; its entries are kept", target.root)
                gone.append(target)
        return gone

    def _went_offline(self, root: str, s: IndexSummary) -> bool:
        """For a file that could not be read: whether its root has gone meanwhile (then
        the file is not a failure; its entry stays as it was)."""
        if root in s.offline:
            return True
        if self._offline(root):
            s.offline.append(root)
            log.warning("%s went away during the run; its entries are kept", root)
            return True
        return False

    def _remove_missing(
        self,
        scanned: Sequence[IndexTarget],
        found: dict[str, tuple[FoundFile, str]],
        s: IndexSummary,
    ) -> int:
        gone: list[str] = []
        for target in scanned:
            # Checked again now: a drive unplugged between the offline check and the end of
            # the scan (the scan then found nothing, or half) is offline, not emptied.
            if self._offline(target.root):
                if target.root not in s.offline:
                    s.offline.append(target.root)
                log.warning("%s went away during the run; its entries are kept", target.root)
                continue
            gone += [
                p
                for p in self.catalog.files_in(str(target.folder))
                if p not in found and not any(is_within(p, u) for u in self._unlisted)
            ]
        removed = self.catalog.delete_files(gone) if gone else 0
        collect_garbage(self.catalog, self.store)
        return removed


def file_row(
    f: FoundFile,
    root: str,
    fingerprint: str | None,
    size: tuple[int, int] | None,
    error: str | None = None,
    taken: str = "",
) -> FileRow:
    """The catalog row for a scanned file: indexed (with its pixel size and capture
    time) or failed."""
    w, h = size or (None, None)
    status = "failed" if error is not None else "ok"
    return FileRow(f.path, root, f.size, f.mtime_ns, fingerprint, w, h, status, error, taken)


def write_to_store(store: VectorStore, encoder_id: str, analyses: Sequence[Analysis]) -> None:
    """Upsert every vector of these contents, one call per vector kind."""
    by_kind: dict[str, list[VectorRow]] = {}
    for a in analyses:
        for v in a.vectors:
            by_kind.setdefault(v.kind, []).append(v)
    for kind, rows in by_kind.items():
        ids = [vector_id(v.fingerprint, v.kind, v.idx) for v in rows]
        metas = [vector_metadata(v.fingerprint, v.box) for v in rows]
        store.upsert(encoder_id, ids, np.stack([v.vector for v in rows]), metas, kind=kind)


def collect_garbage(catalog: Catalog, store: VectorStore) -> int:
    """Drop vectors of contents no file holds any more, from the catalog and the index."""
    gone = catalog.collect_orphans()
    if store.shared:
        # other machines may hold these contents: the uploader decides (shared.py)
        return len(gone)
    by_col: dict[tuple[str, str], list[str]] = {}
    for encoder, kind, fp, idx in gone:
        by_col.setdefault((encoder, kind), []).append(vector_id(fp, kind, idx))
    for (encoder, kind), ids in by_col.items():
        store.delete(encoder, ids, kind=kind)
    return len(gone)


# How much less CPU priority the loader threads take than the encoder, in a process
# without a window (Linux nice steps; 0 turns it off). The stages share the cores: a
# loader thread that takes a core from the encoder's thread pool stalls the whole pool at
# its next barrier, while one that waits fills the gaps the pool leaves (the encoder
# alone keeps ~1.8 of 2 cores busy). Not in the window: a lowered thread that holds the
# GIL when it loses its core would keep the GUI thread waiting.
LOADER_NICE = 10
_loader_state = threading.local()


def _yield_to_encoder() -> None:
    """Lower the calling loader thread's priority, once per thread: on Linux (where the
    nice value is per thread; elsewhere the call would name the process or nothing), in
    a headless process, and only once the analyser exists: a thread a library creates
    copies its creator's value, so the encoder's and OpenCV's pools must not be started
    from a lowered thread (the analyser is built on the first loader that needs it).
    Raising one's own nice value needs no privilege; the threads end with the pool."""
    if getattr(_loader_state, "lowered", False):
        return
    _loader_state.lowered = True
    if LOADER_NICE and is_headless() and sys.platform.startswith("linux"):
        try:
            me = threading.get_native_id()
            now = os.getpriority(os.PRIO_PROCESS, me)
            os.setpriority(os.PRIO_PROCESS, me, min(19, now + LOADER_NICE))
        except OSError as exc:  # a sandbox without setpriority: run at normal priority
            log.debug("loader thread priority unchanged: %s", exc)


def _pipelined(
    fn: Callable[[Any], Any], items: Sequence[Any], cancel: threading.Event
) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` in order, with up to a few items in flight in loader threads,
    so decoding overlaps the encoder. Stops promptly when ``cancel`` is set."""
    if not items:
        return
    window: deque[tuple[Any, Future[Any]]] = deque()
    lookahead = LOADER_THREADS * LOOKAHEAD_PER_THREAD
    it = iter(items)
    with ThreadPoolExecutor(LOADER_THREADS, thread_name_prefix="loader") as pool:
        try:
            for item in it:
                window.append((item, pool.submit(fn, item)))
                if len(window) >= lookahead:
                    break
            while window and not cancel.is_set():
                item, fut = window.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    window.append((nxt, pool.submit(fn, nxt)))
                yield item, fut.result()
        finally:
            for _, fut in window:
                fut.cancel()
