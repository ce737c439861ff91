"""Searches run in their own thread pool, never behind indexing; a newer query
supersedes an older one (its results are dropped, not shown late)."""

from __future__ import annotations

import logging
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.library import Library
from desktop_app.engine.search import Box, SearchResult

log = logging.getLogger(__name__)

URL_TIMEOUT_S = 10
URL_MAX_BYTES = 50 * 2**20


@dataclass
class Query:
    """What the user asked: an image (file, bytes or URL), an indexed file's stored
    vector (Find similar), or a text phrase; optionally a region of the image."""

    kind: str  # "image" | "similar" | "text" | "url"
    path: str | None = None
    data: bytes | None = None
    text: str | None = None
    region: Box | None = None
    label: str = ""
    top_k: int = 50
    threshold: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        base = self.label or self.text or (Path(self.path).name if self.path else "image")
        if self.region:
            base += " (region)"
        return base


class _Signals(QObject):
    done = Signal(int, object, object, float)  # generation, query, results, seconds
    failed = Signal(int, object, str)  # generation, query, message


class _SearchTask(QRunnable):
    def __init__(self, runner: SearchRunner, generation: int, query: Query) -> None:
        super().__init__()
        self.runner, self.generation, self.query = runner, generation, query

    def run(self) -> None:
        if self.generation != self.runner.generation:
            return  # superseded before it started
        started = time.perf_counter()
        try:
            results = run_query(self.runner.library, self.query)
        except DesktopAppError as exc:
            self._emit_failed(str(exc))
            return
        except Exception as exc:  # the thread boundary
            log.exception("search failed")
            self._emit_failed(f"{type(exc).__name__}: {exc}")
            return
        if self.generation == self.runner.generation:
            try:
                self.runner.signals.done.emit(
                    self.generation, self.query, results, time.perf_counter() - started
                )
            except RuntimeError:
                pass  # window closed meanwhile

    def _emit_failed(self, message: str) -> None:
        try:
            self.runner.signals.failed.emit(self.generation, self.query, message)
        except RuntimeError:
            pass


def run_query(library: Library, q: Query) -> list[SearchResult]:
    if q.kind == "text":
        return library.search_text(q.text or "", q.top_k, q.threshold)
    if q.kind == "similar":
        assert q.path
        if q.region:
            return library.search_image(q.path, q.top_k, q.threshold, region=q.region)
        return library.search_similar(q.path, q.top_k, q.threshold)
    if q.kind == "url" and q.data is None:
        q.data = fetch_url(q.text or "")
    source: Path | bytes = q.data if q.data is not None else Path(q.path or "")
    return library.search_image(source, q.top_k, q.threshold, region=q.region)


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
    finished = Signal(object, object, float)  # query, results, seconds
    failed = Signal(object, str)

    def __init__(self, library: Library, pool: QThreadPool, parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.pool = pool
        self.generation = 0
        self.signals = _Signals()
        self.signals.done.connect(self._done)
        self.signals.failed.connect(self._failed)

    def search(self, query: Query) -> int:
        self.generation += 1
        self.pool.start(_SearchTask(self, self.generation, query), priority=1)
        return self.generation

    def _done(
        self, generation: int, query: Query, results: list[SearchResult], seconds: float
    ) -> None:
        if generation == self.generation:
            self.finished.emit(query, results, seconds)

    def _failed(self, generation: int, query: Query, message: str) -> None:
        if generation == self.generation:
            self.failed.emit(query, message)
