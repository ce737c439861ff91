"""A newer query supersedes an older one: the older search's partial stage stops between
candidates instead of holding a search thread until it is done (the soak found most of
the search pool's time spent finishing stages nobody would see)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from desktop_app.engine import partial
from desktop_app.engine.colour import query_small, tiny_to_bytes
from desktop_app.engine.errors import SearchCancelled
from desktop_app.engine.library import Library
from desktop_app.engine.search import SearchResult

from .conftest import PHOTOS, run_index

TIMEOUT = 30_000


@pytest.fixture
def indexed_library(lib: Library, photos: Path) -> Library:
    run_index(lib, [photos])
    return lib


def counting_verify(monkeypatch: pytest.MonkeyPatch, cancel: threading.Event | None) -> list[int]:
    """Count the candidates verified; with ``cancel``, set it during the first one (a
    newer query arriving mid-stage)."""
    calls: list[int] = []
    real = partial.verify

    def verify(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if cancel is not None:
            cancel.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(partial, "verify", verify)
    return calls


def test_partial_stage_stops_at_the_next_candidate_once_cancelled(
    indexed_library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = photos / PHOTOS[3].name
    uncancelled = counting_verify(monkeypatch, None)
    full, merged = indexed_library.image_stages(query, top_k=10)
    full()
    assert merged()[0].path == str(query)
    assert len(uncancelled) > 1  # the whole shortlist is checked when nobody cancels

    cancel = threading.Event()
    calls = counting_verify(monkeypatch, cancel)
    full, merged = indexed_library.image_stages(query, top_k=10, cancel=cancel)
    assert full()[0].path == str(query)  # the first stage is not affected
    with pytest.raises(SearchCancelled):
        merged()
    # each verification thread finishes at most the candidate it had started
    assert 1 <= len(calls) <= partial.VERIFY_THREADS < len(uncancelled)


def test_find_similar_partial_stage_can_be_cancelled(
    indexed_library: Library, photos: Path
) -> None:
    cancel = threading.Event()
    full, merged = indexed_library.similar_stages(photos / PHOTOS[5].name, 10, cancel=cancel)
    full()
    cancel.set()
    with pytest.raises(SearchCancelled):
        merged()


def test_colour_check_stops_once_cancelled() -> None:
    image = Image.open(PHOTOS[0]).convert("RGB")
    q = query_small(image)
    jobs = [("a", tiny_to_bytes(image, *image.size), False)]
    assert partial.colour_matches(q, jobs)["a"].confirmed  # the same picture matches
    cancel = threading.Event()
    cancel.set()
    assert partial.colour_matches(q, jobs, cancel) == {}


class StagedLibrary:
    """Stands in for the library: a first stage at once, then a partial stage that runs
    until its query is cancelled (or 20 s pass) and reports what happened."""

    def __init__(self) -> None:
        self.partial_outcome: dict[str, str] = {}
        self.partial_started = threading.Event()

    def image_stages(self, source: Path, *args: Any, cancel: threading.Event, **kw: Any) -> Any:
        name = Path(source).name
        result = [SearchResult(str(source), 1.0)]

        def merged() -> list[SearchResult]:
            self.partial_started.set()
            if name == "second.jpg" or not cancel.wait(20):
                self.partial_outcome[name] = "finished"
                return result
            self.partial_outcome[name] = "cancelled"
            raise SearchCancelled("superseded")

        return [lambda: result, merged]


def test_a_newer_query_stops_the_older_ones_partial_stage(qtbot) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QThreadPool

    from desktop_app.ui.search_runner import Query, SearchRunner

    pool = QThreadPool()
    pool.setMaxThreadCount(2)
    lib = StagedLibrary()
    runner = SearchRunner(lib, pool)  # type: ignore[arg-type]
    failures: list[str] = []
    completed: list[str] = []
    runner.failed.connect(lambda _q, message: failures.append(message))
    runner.completed.connect(lambda q, _r, _s: completed.append(Path(q.path).name))
    with qtbot.waitSignal(runner.finished, timeout=TIMEOUT):
        runner.search(Query("image", path="/photos/first.jpg"))
    qtbot.waitUntil(lib.partial_started.is_set, timeout=TIMEOUT)
    with qtbot.waitSignal(runner.completed, timeout=TIMEOUT):
        runner.search(Query("image", path="/photos/second.jpg"))
    assert pool.waitForDone(TIMEOUT)
    assert lib.partial_outcome == {"first.jpg": "cancelled", "second.jpg": "finished"}
    assert completed == ["second.jpg"] and failures == []  # superseded is not a failure


def test_verification_helpers_never_wait_for_good(library: Library, photos: Path) -> None:
    """Keypoint verification's helper threads start when the colour check ends; called
    with a start signal nobody gives, the call still ends (its own thread gives it once
    it has run out of candidates) and checks every candidate."""
    from desktop_app.engine.queries import stored_query

    run_index(library, [photos])
    paths = sorted(photos.iterdir())
    q = stored_query(library.catalog, library.encoder_id, paths[0])
    search = partial.PartialSearch(library.catalog, library.store, library.encoder_id)
    fps = [library.catalog.file(str(p)).fingerprint for p in paths[:6]]  # type: ignore[union-attr]
    never = threading.Event()
    verified = search._verify(q, fps, set(), never)
    assert never.is_set()
    assert fps[0] in verified  # the query's own content verifies
    unsignalled = search._verify(q, fps, set())
    assert {fp: (v.inliers, v.box) for fp, v in verified.items()} == {
        fp: (v.inliers, v.box) for fp, v in unsignalled.items()
    }


def test_a_failed_verification_stops_its_helpers(
    library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the caller's own turn fails, the helpers it then lets start take no more
    candidates: the error reaches the caller at once, not after the rest are checked."""
    from desktop_app.engine.queries import stored_query

    run_index(library, [photos])
    paths = sorted(photos.iterdir())
    q = stored_query(library.catalog, library.encoder_id, paths[0])
    search = partial.PartialSearch(library.catalog, library.store, library.encoder_id)
    fps = [library.catalog.file(str(p)).fingerprint for p in paths[:6]]  # type: ignore[union-attr]
    checked: list[str] = []

    def broken(*args: Any, **kwargs: Any) -> None:
        checked.append(threading.current_thread().name)
        raise RuntimeError("broken verification")

    monkeypatch.setattr(partial, "verify", broken)
    start = threading.Event()
    with pytest.raises(RuntimeError, match="broken verification"):
        search._verify(q, fps, set(), start)
    assert start.is_set()
    assert checked == [threading.current_thread().name]
