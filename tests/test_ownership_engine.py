"""Thread-ownership faults of the engine (issue 9's review, second pass), each shown fixed.

Fast tier: the ``histogram`` encoder. No Qt here: the engine is used from plain threads,
as the window's pools and worker use it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from desktop_app.engine import indexer as indexer_module
from desktop_app.engine.library import Library

from .conftest import run_index
from .test_faults import make_images


# -- 13: a drive unplugged between the offline check and the scan ---------------------------
def test_a_folder_that_goes_away_during_the_scan_is_offline_not_emptied(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window's flaky test saw 0 files: the watcher's catch-up job checked the root
    (there), then the folder was unplugged, the scan found nothing and every entry was
    removed as deleted. Here the unplug happens exactly in that gap."""
    drive = tmp_path / "drive"
    make_images(drive, 6, seed=4)
    assert run_index(lib, [drive]).embedded == 6
    away = tmp_path / "unplugged"
    real_scan = indexer_module.scan

    def unplugged_then_scan(folder: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not away.exists():
            drive.rename(away)  # after the offline check said "online"
        return real_scan(folder, *args, **kwargs)

    monkeypatch.setattr(indexer_module, "scan", unplugged_then_scan)
    s = run_index(lib, [])
    assert s.removed == 0 and s.offline == [str(drive)]
    assert lib.catalog.counts()["files"] == 6
    monkeypatch.setattr(indexer_module, "scan", real_scan)
    away.rename(drive)
    s = run_index(lib, [])
    assert (s.embedded, s.reused, s.removed, s.unchanged) == (0, 0, 0, 6)


def test_a_folder_unplugged_half_way_through_its_scan_keeps_every_entry(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race, one step later (seen in the window test after the first fix): the
    folder went after the scan listed it, so the files not yet stat'ed could not be, and
    each was recorded as a failure: 36 of 40 photos vanished from the count."""
    drive = tmp_path / "drive"
    make_images(drive, 6, seed=12)
    assert run_index(lib, [drive]).embedded == 6
    away = tmp_path / "unplugged"
    real_scan = indexer_module.scan

    def unplugged_mid_scan(folder: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        for i, found in enumerate(real_scan(folder, *args, **kwargs)):
            if i == 2 and not away.exists():
                drive.rename(away)
            yield found

    monkeypatch.setattr(indexer_module, "scan", unplugged_mid_scan)
    s = run_index(lib, [])
    assert s.removed == 0 and s.failed == [] and s.offline == [str(drive)]
    assert lib.catalog.counts() == {"files": 6, "distinct": 6, "failed": 0}
    monkeypatch.setattr(indexer_module, "scan", real_scan)
    away.rename(drive)
    s = run_index(lib, [])
    assert (s.embedded, s.reused, s.removed, s.unchanged) == (0, 0, 0, 6)


# -- 5: a search never creates a collection ------------------------------------------------
def test_a_search_on_an_empty_library_finds_nothing_and_creates_no_collection(
    lib: Library, tmp_path: Path
) -> None:
    """Reads went through get_or_create_collection: a search (any thread) created the
    active encoder's collections, a write outside the one writer."""
    query = make_images(tmp_path / "q", 1, seed=9)[0]
    assert lib.search_image(query) == []
    assert lib.store.count(lib.encoder_id) == 0
    assert lib.store.ids(lib.encoder_id, "region") == set()
    assert lib.store.client.list_collections() == []
    # the writer creates it with its first batch; reads find it from then on
    drive = tmp_path / "drive"
    make_images(drive, 3, seed=5)
    run_index(lib, [drive])
    assert lib.store.count(lib.encoder_id) == 3
    assert lib.search_image(query)  # answers from the collection the writer made


# -- 4: a store rebuild never closes the store under a running search ----------------------
def test_a_store_rebuilt_under_a_running_search_is_closed_only_after_it(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """catch_up_store closed the store and rebuilt it while a search (pool thread) was in
    a query on it: the search failed on a closed store."""
    from desktop_app.engine.errors import StoreDamaged

    folder = tmp_path / "photos"
    images = make_images(folder, 12, seed=8)
    run_index(lib, [folder])
    old = lib.store
    in_query, go_on = threading.Event(), threading.Event()
    real_query = old.query

    def slow_query(*args: Any, **kwargs: Any) -> Any:
        in_query.set()
        assert go_on.wait(60)  # the search is inside Chroma while the writer rebuilds
        return real_query(*args, **kwargs)

    monkeypatch.setattr(old, "query", slow_query)
    got: list[Any] = []

    def search() -> None:
        try:
            got.append(lib.search_image(images[0], top_k=3))
        except Exception as exc:  # reported to the test, not lost on this thread
            got.append(exc)

    searching = threading.Thread(target=search)
    searching.start()
    try:
        assert in_query.wait(60)
        real_sync = lib.sync_store
        calls: list[int] = []

        def failing_once(encoder_id: str | None = None, cancel: Any = None) -> int:
            calls.append(1)
            if len(calls) == 1:
                raise StoreDamaged("the vector index failed to count its vectors (test)")
            return real_sync(encoder_id, cancel)

        monkeypatch.setattr(lib, "sync_store", failing_once)
        lib.catch_up_store(lib.encoder_id)  # the writer: set aside and rebuilt
        assert lib.store is not old
        assert not old.closed  # the search still holds it
    finally:
        go_on.set()
        searching.join(60)
    assert not isinstance(got[0], Exception), got[0]
    assert got[0][0].path == str(images[0])
    assert old.closed  # closed by the search's release, once it was done with it
    assert lib.search_image(images[1], top_k=1)[0].path == str(images[1])  # the new store


# -- 3: a server that accepts and never answers ---------------------------------------------
def test_a_server_that_never_answers_fails_each_caller_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """chromadb's first requests had no timeout and ran under ``_connect_lock``: one
    search hung for good, and every other thread (the writer too) behind it."""
    import socket

    from desktop_app.engine import chroma_http
    from desktop_app.engine.remote import RemoteVectorStore, StoreUnavailable

    monkeypatch.setattr(chroma_http, "HANDSHAKE_TIMEOUT_S", 0.5)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes connections; nobody ever answers
    port = silent.getsockname()[1]
    store = RemoteVectorStore(f"http://127.0.0.1:{port}")
    outcomes: list[str] = []

    def call() -> None:
        try:
            store.count("enc")
            outcomes.append("answered")
        except StoreUnavailable as exc:
            outcomes.append(f"unavailable: {exc}")

    callers = [threading.Thread(target=call, daemon=True) for _ in range(3)]
    try:
        for t in callers:
            t.start()
        for t in callers:
            t.join(120)  # a hang detector, not a speed check: the fault hung for ever
        assert not any(t.is_alive() for t in callers)
        assert len(outcomes) == 3
        assert all(o.startswith("unavailable: cannot reach the Chroma server") for o in outcomes)
    finally:
        silent.close()
        store.close()


# -- 2: the end-of-run upload ignored cancel --------------------------------------------------
class _RecordingServer:
    """Stands in for a Chroma server (its HTTP calls can take up to 120 s each): records
    what arrives; ``on_call`` runs at each call."""

    url = "http://server.test:8000"

    def __init__(self, on_call: Any) -> None:
        self.on_call = on_call
        self.files: set[str] = set()
        self.vectors: set[str] = set()

    def put_files(self, entries: Any) -> None:
        self.on_call()
        self.files.update(meta["path"] for _id, meta in entries)

    def delete_files(self, ids: Any) -> None:
        self.on_call()

    def upsert(self, encoder: str, ids: Any, *args: Any, **kwargs: Any) -> None:
        self.on_call()
        self.vectors.update(ids)

    def put_features(self, entries: Any) -> None:
        self.on_call()

    def files_for(self, fps: Any) -> list[dict[str, Any]]:
        return []

    def delete_contents(self, fps: Any) -> None:
        self.on_call()


def test_a_cancelled_upload_stops_between_rounds_and_keeps_its_marks(
    lib: Library, tmp_path: Path
) -> None:
    from desktop_app.engine.shared import Uploader, track_changes, unsynced_count

    folder = tmp_path / "photos"
    make_images(folder, 5, seed=11)
    run_index(lib, [folder])
    cancel = threading.Event()
    server = _RecordingServer(cancel.set)  # the user cancels (or quits) during round one
    track_changes(lib.catalog, server.url)  # a new server: everything is marked
    marked = unsynced_count(lib.catalog)
    uploader = Uploader(lib.catalog, server, "this-machine")  # type: ignore[arg-type]
    assert uploader.drain(cancel)
    assert server.files and not server.vectors  # one round (the files), then it stopped
    left = unsynced_count(lib.catalog)
    assert 0 < left < marked  # the rest is still marked: nothing lost
    server.on_call = lambda: None
    assert uploader.drain()  # the next run uploads the rest
    assert unsynced_count(lib.catalog) == 0
    assert len(server.files) == 5 and len(server.vectors) >= 5
