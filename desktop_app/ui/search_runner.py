"""Searches run in their own thread pool, never behind indexing; a newer query
supersedes an older one: its results are dropped, not shown late, and its partial stage
stops between candidates (each task's ``cancel`` event), so the pool's threads are free
for the new query instead of finishing work nobody will see.

``_SearchTask.run`` runs on a pool thread (the engine's search stages, a URL download);
``SearchRunner`` lives on the GUI thread, sets the superseded tasks' events and re-emits
only the current generation's results there. A ``Query`` belongs to the GUI thread: a
search thread only reads it (a URL's downloaded bytes come back through a signal and are
stored on the GUI thread)."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, SignalInstance

from desktop_app.engine.cleanup import NO_CLEANUP, Cleanup
from desktop_app.engine.errors import DesktopAppError, SearchCancelled
from desktop_app.engine.filters import NO_FILTER, ResultFilter
from desktop_app.engine.library import Library
from desktop_app.engine.search import Box, SearchResult

log = logging.getLogger(__name__)

URL_TIMEOUT_S = 10
URL_MAX_BYTES = 50 * 2**20


class QueryKind(StrEnum):
    """What a query searches by; a ``StrEnum`` so it still equals the plain word."""

    IMAGE = "image"  # a file or image bytes (dropped, pasted, opened)
    SIMILAR = "similar"  # an indexed file's stored vectors (Find similar)
    TEXT = "text"  # a phrase, for CLIP encoders
    URL = "url"  # an image link, downloaded when the query runs


@dataclass
class Query:
    """What the user asked: an image (file, bytes or URL), an indexed file's stored
    vector (Find similar), or a text phrase; optionally a region of the image."""

    kind: QueryKind
    path: str | None = None
    data: bytes | None = None
    text: str | None = None
    region: Box | None = None
    label: str = ""
    top_k: int = 50
    threshold: float = 0.0
    result_filter: ResultFilter = NO_FILTER  # applied by the engine after the store lookup
    cleanup: Cleanup = NO_CLEANUP  # text removal / enhancement of the query image

    def __post_init__(self) -> None:
        # Callers may pass the plain word; an unknown one fails here, not mid-search.
        self.kind = QueryKind(self.kind)

    def describe(self) -> str:
        base = self.label or self.text or (Path(self.path).name if self.path else "image")
        if self.region:
            base += " (region)"
        if self.cleanup.active:
            base += f" ({self.cleanup.describe()})"
        return base


class _Signals(QObject):
    done = Signal(int, object, object, float, bool)  # generation, query, results, s, final
    failed = Signal(int, object, str)  # generation, query, message
    fetched = Signal(int, object, object)  # generation, query, the URL's bytes


class _SearchTask(QRunnable):
    def __init__(
        self, runner: SearchRunner, generation: int, query: Query, cancel: threading.Event
    ) -> None:
        super().__init__()
        self.runner, self.generation, self.query = runner, generation, query
        self.cancel = cancel  # set on the GUI thread when a newer query supersedes this one

    def run(self) -> None:
        if self.cancel.is_set():
            return  # superseded before it started
        started = time.perf_counter()
        try:
            q, data = self.query, None
            if q.kind == QueryKind.URL and q.data is None:
                data = fetch_url(q.text or "")
                # the Query belongs to the GUI thread: it keeps the bytes (a region of it
                # searches again without a download) when the runner gets them there
                self._emit(self.runner.signals.fetched, data)
            # Stages: full-image results first, then partial-region matches merged in.
            stages = run_query(self.runner.library, q, data, self.cancel)
            for i, compute in enumerate(stages):
                if self.cancel.is_set():
                    return  # superseded: stop spending CPU on it
                results = compute()
                final = i == len(stages) - 1
                seconds = time.perf_counter() - started
                self._emit(self.runner.signals.done, results, seconds, final)
        except SearchCancelled:
            return  # superseded mid-stage: the newer query's results are what counts
        except DesktopAppError as exc:  # expected (an unreadable query image): its words
            self._emit(self.runner.signals.failed, f"Search failed: {exc}")
        except Exception as exc:  # the thread boundary: torch errors (out of memory) too
            log.exception("search failed")
            self._emit(self.runner.signals.failed, f"Search failed: {type(exc).__name__}: {exc}")

    def _emit(self, signal: SignalInstance, *args: object) -> None:
        """Report to the GUI thread. Only the emission may meet a closed window (its
        relay deleted): that is the one error dropped here, and it is logged."""
        try:
            signal.emit(self.generation, self.query, *args)
        except RuntimeError as exc:
            log.debug("search result dropped, the window closed: %s", exc)


Stage = Callable[[], list[SearchResult]]


def run_query(
    library: Library,
    q: Query,
    data: bytes | None = None,
    cancel: threading.Event | None = None,
) -> list[Stage]:
    """The query as a list of stages, each computing the whole result list so far; once
    ``cancel`` is set, a partial stage stops early with :class:`SearchCancelled`.

    Runs on a search thread and never changes ``q``, which belongs to the GUI thread: a
    URL query's image comes in ``data`` (else it is downloaded here, for this call)."""
    f = q.result_filter
    if q.kind == QueryKind.TEXT:
        return [lambda: library.search_text(q.text or "", q.top_k, q.threshold, f)]
    if q.kind == QueryKind.SIMILAR and not q.region:
        assert q.path
        return library.similar_stages(q.path, q.top_k, q.threshold, f, cancel=cancel)
    if q.kind == QueryKind.URL and q.data is None and data is None:
        data = fetch_url(q.text or "")
    source: Path | bytes = (
        q.data if q.data is not None else data if data is not None else Path(q.path or "")
    )
    return library.image_stages(
        source,
        q.top_k,
        q.threshold,
        region=q.region,
        result_filter=f,
        cleanup=q.cleanup,
        cancel=cancel,
    )


def fetch_url(url: str) -> bytes:
    """An image dragged from a browser as a URL only: fetched with a timeout and a cap."""
    if not url.startswith(("http://", "https://")):
        raise DesktopAppError(f"cannot fetch {url}: only http and https links")
    req = urllib.request.Request(url, headers={"User-Agent": "desktop-app"})
    try:
        with urllib.request.urlopen(req, timeout=URL_TIMEOUT_S) as resp:
            data: bytes = resp.read(URL_MAX_BYTES + 1)
    except OSError as exc:
        raise DesktopAppError(f"could not download {url}: {exc}") from exc
    if len(data) > URL_MAX_BYTES:
        raise DesktopAppError(f"{url} is larger than {URL_MAX_BYTES // 2**20} MB")
    return data


class SearchRunner(QObject):
    """``finished`` carries a query's first results (full-image matches, shown at once),
    ``updated`` each later stage, ``completed`` the final list (partial matches merged)."""

    finished = Signal(object, object, float)  # query, results, seconds
    updated = Signal(object, object, float)
    completed = Signal(object, object, float)
    failed = Signal(object, str)

    def __init__(self, library: Library, pool: QThreadPool, parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.pool = pool
        self.generation = 0
        self._shown = 0  # the generation whose first results are on screen
        self._cancel = threading.Event()  # the current task's; set when it is superseded
        self.signals = _Signals()
        self.signals.done.connect(self._done)
        self.signals.failed.connect(self._failed)
        self.signals.fetched.connect(self._fetched)

    def cancel_all(self) -> None:
        """Drop every search under way: a running one stops at its next stage, or within
        its partial stage at the next candidate."""
        self.generation += 1
        self._cancel.set()

    def search(self, query: Query) -> int:
        self.cancel_all()  # the older query is superseded: its task stops spending CPU
        self._cancel = threading.Event()
        self.pool.start(_SearchTask(self, self.generation, query, self._cancel), priority=1)
        return self.generation

    def _done(
        self,
        generation: int,
        query: Query,
        results: list[SearchResult],
        seconds: float,
        final: bool,
    ) -> None:
        if generation != self.generation:
            return
        if generation != self._shown:
            self._shown = generation
            self.finished.emit(query, results, seconds)
        else:
            self.updated.emit(query, results, seconds)
        if final:
            self.completed.emit(query, results, seconds)

    def _fetched(self, _generation: int, query: Query, data: bytes) -> None:
        """A URL query's image arrived (GUI thread): the query keeps it, so a search by a
        region of it, or a re-run, needs no second download."""
        if query.data is None:
            query.data = data

    def _failed(self, generation: int, query: Query, message: str) -> None:
        if generation == self.generation:
            self.failed.emit(query, message)
