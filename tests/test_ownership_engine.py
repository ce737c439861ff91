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


# -- 4 / R2 1: a store rebuild never closes (nor renames) the store under a running search --
def _damaged_once(lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's next sync finds the store damaged (once): catch_up_store rebuilds."""
    from desktop_app.engine.errors import StoreDamaged

    real_sync = lib.sync_store
    calls: list[int] = []

    def failing_once(encoder_id: str | None = None, cancel: Any = None) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise StoreDamaged("the vector index failed to count its vectors (test)")
        return real_sync(encoder_id, cancel)

    monkeypatch.setattr(lib, "sync_store", failing_once)


def test_a_store_rebuild_waits_for_the_running_search_before_it_sets_the_store_aside(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild first closed the store under a running search; then (issue 9) it
    detached it and renamed its folder while it was open and searches could still take
    it: a search on a collection not yet loaded got "Database error" or NotFoundError
    and marked the healthy new store damaged (and on Windows the rename fails on open
    SQLite files). Now the writer retires the old store, waits for the search under way
    to end and the store to close, and only then renames and rebuilds; a search that
    comes meanwhile waits for the new store."""
    from desktop_app.engine.store import VectorStore

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
    writer_waits, writer_done, moved = threading.Event(), threading.Event(), threading.Event()
    real_wait = VectorStore.wait_closed

    def wait_closed(self: VectorStore, timeout: float) -> bool:
        writer_waits.set()
        moved.set()
        return real_wait(self, timeout)

    monkeypatch.setattr(VectorStore, "wait_closed", wait_closed)
    got: dict[str, Any] = {}

    def run(name: str, call: Any) -> threading.Thread:
        def target() -> None:
            try:
                got[name] = call()
            except Exception as exc:  # reported to the test, not lost on this thread
                got[name] = exc
            finally:
                if name == "writer":
                    writer_done.set()
                    moved.set()

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    _damaged_once(lib, monkeypatch)
    threads = [run("first", lambda: lib.search_image(images[0], top_k=3))]
    try:
        assert in_query.wait(60)
        threads.append(run("writer", lambda: lib.catch_up_store(lib.encoder_id)))
        assert moved.wait(60)
        assert writer_waits.is_set() and not writer_done.is_set()  # it waits for the search
        assert not old.closed
        assert not list(tmp_path.glob("**/chroma.damaged-*"))  # not renamed under it
        # a search that starts now waits for the rebuilt store (it may not take the old)
        threads.append(run("second", lambda: lib.search_image(images[1], top_k=1)))
    finally:
        go_on.set()
        for t in threads:
            t.join(120)
    assert not any(t.is_alive() for t in threads)
    for name in ("first", "writer", "second"):
        assert not isinstance(got[name], Exception), (name, got[name])
    assert got["first"][0].path == str(images[0])
    assert got["second"][0].path == str(images[1])
    assert old.closed and lib.store is not old
    assert list(tmp_path.glob("**/chroma.damaged-*"))  # set aside once it was closed
    assert lib.status(load_encoder=False).store_health.startswith("rebuilt from the catalog")
    assert not lib._store_suspect  # the healthy new store is not marked for repair


# -- R2 2: a search during the refill got part of the results -------------------------------
def test_a_search_during_a_rebuilds_refill_never_sees_part_of_the_store(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuilt store was handed to searches before ``sync_store`` refilled it
    (16 vectors a call): a search or the duplicate finder got a part of the results,
    silently. Now a search during the refill waits for it (here: gives up, StoreBusy)."""
    from desktop_app.engine import store as store_module
    from desktop_app.engine.store import VectorStore

    folder = tmp_path / "photos"
    make_images(folder, 12, seed=9)
    run_index(lib, [folder])
    encoder_id = lib.encoder_id
    old = lib.store
    seen: list[Any] = []
    real_upsert = VectorStore.upsert

    def upsert(self: VectorStore, *args: Any, **kwargs: Any) -> None:
        real_upsert(self, *args, **kwargs)
        if self is not old and not seen:  # the refill's first call: the rest is to come
            try:
                seen.append({k: lib.reads.count(encoder_id, k) for k in ("full", "region")})
            except Exception as exc:  # StoreBusy: it waited and was told so
                seen.append(exc)

    monkeypatch.setattr(VectorStore, "upsert", upsert)
    monkeypatch.setattr(store_module, "READ_WAIT_S", 0.2, raising=False)  # not 2 minutes
    _damaged_once(lib, monkeypatch)
    lib.catch_up_store(encoder_id)
    assert lib.store is not old
    assert len(seen) == 1 and "being rebuilt" in str(seen[0]), seen  # not a partial count
    want = {kind: n for (enc, kind), n in lib.catalog.vector_counts().items()}
    assert {k: lib.reads.count(encoder_id, k) for k in ("full", "region")} == want


# -- R2 3: a rebuild that fails half-way leaks nothing and recovers -------------------------
def test_a_rebuild_that_fails_after_the_swap_closes_the_old_store_and_recovers(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``retire()`` of the old store never ran when the rebuild raised after the swap:
    the old store (and its Chroma system) stayed open for the life of the process."""
    from desktop_app.engine.errors import StoreDamaged

    folder = tmp_path / "photos"
    images = make_images(folder, 6, seed=10)
    run_index(lib, [folder])
    old = lib.store
    real_sync = lib.sync_store
    failing = [True]

    def sync(encoder_id: str | None = None, cancel: Any = None) -> int:
        if failing[0]:
            raise StoreDamaged("the vector index failed to write (test: disk trouble)")
        return real_sync(encoder_id, cancel)

    monkeypatch.setattr(lib, "sync_store", sync)
    with pytest.raises(StoreDamaged):
        lib.catch_up_store(lib.encoder_id)  # damaged; its rebuild's refill fails too
    assert old.closed  # not leaked
    with pytest.raises(StoreDamaged, match="could not be rebuilt"):
        lib.search_image(images[0], top_k=1)  # told at once, not after a wait
    failing[0] = False  # the disk is fine again: the next run repairs it
    lib.catch_up_store(lib.encoder_id)
    assert lib.search_image(images[2], top_k=1)[0].path == str(images[2])


def test_a_store_detached_twice_still_stops_its_chroma_system(tmp_path: Path) -> None:
    """A second ``detach()`` overwrote the detached system with None: ``close()`` then
    stopped nothing and the system (its SQLite files, its threads) lived on."""
    from chromadb.api.shared_system_client import SharedSystemClient

    from desktop_app.engine.store import VectorStore

    store = VectorStore.persistent(tmp_path / "chroma")
    system = SharedSystemClient._identifier_to_system[store.client._identifier]
    assert store.detach() and store.detach()
    store.close()
    assert not system._running


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


# -- R2 5: connecting to a server: one thread at a time, and nothing leaks on failure -------
class _FakeHttpClient:
    """What ``RemoteVectorStore._connect`` returns: records whether it was closed."""

    def __init__(self, batch_error: Exception | None = None) -> None:
        self.batch_error = batch_error
        self.closed = False

    def get_max_batch_size(self) -> int:
        if self.batch_error is not None:
            raise self.batch_error
        return 100

    def close(self) -> None:
        self.closed = True


def test_a_connection_that_fails_after_connecting_closes_its_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``get_max_batch_size`` raising left the new client open: a chromadb System (and
    its HTTP session) leaked with every failed attempt."""
    import httpx

    from desktop_app.engine.remote import RemoteVectorStore, StoreUnavailable

    made: list[_FakeHttpClient] = []

    def connect(self: RemoteVectorStore) -> _FakeHttpClient:
        made.append(_FakeHttpClient(httpx.ReadTimeout("the server stopped answering")))
        return made[-1]

    monkeypatch.setattr(RemoteVectorStore, "_connect", connect)
    store = RemoteVectorStore("http://server.test:8000")
    for _ in range(2):
        with pytest.raises(StoreUnavailable, match="stopped answering"):
            store.ping()
    assert len(made) == 2 and all(c.closed for c in made)


def test_threads_that_connect_at_once_make_one_client_and_waiters_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every thread ran ``chromadb.HttpClient(...)`` at once (chromadb's client cache is
    filled check-then-insert without a lock: an orphaned System per race). Now one
    connects; the others wait for it, and give up with a message if it takes longer
    than a handshake."""
    from desktop_app.engine import chroma_http
    from desktop_app.engine.remote import RemoteVectorStore, StoreUnavailable

    inside, go_on, second_reached = threading.Event(), threading.Event(), threading.Event()
    connecting: list[int] = []  # threads inside _connect at each entry
    made: list[_FakeHttpClient] = []
    now_inside = 0

    def connect(self: RemoteVectorStore) -> _FakeHttpClient:
        nonlocal now_inside
        now_inside += 1
        connecting.append(now_inside)
        if len(connecting) > 1:
            second_reached.set()  # the fault: a second connection while one is under way
        inside.set()
        assert go_on.wait(60)
        now_inside -= 1
        made.append(_FakeHttpClient())
        return made[-1]

    class SeenLock:
        """The store's connect lock, telling the test when a second thread reaches it."""

        def __init__(self) -> None:
            self._lock = threading.Lock()

        def acquire(self, timeout: float = -1) -> bool:
            if inside.is_set():
                second_reached.set()
            return self._lock.acquire(timeout=timeout)

        def release(self) -> None:
            self._lock.release()

        def __enter__(self) -> bool:
            return self.acquire()

        def __exit__(self, *exc: object) -> None:
            self.release()

    monkeypatch.setattr(RemoteVectorStore, "_connect", connect)
    store = RemoteVectorStore("http://server.test:8000")
    store._connect_lock = SeenLock()  # type: ignore[assignment]
    got: list[Any] = []

    def call() -> None:
        try:
            got.append(store.client)
        except StoreUnavailable as exc:
            got.append(exc)

    first = threading.Thread(target=call)
    first.start()
    assert inside.wait(60)
    # a third thread that waits longer than a handshake gives up (shortened here)
    monkeypatch.setattr(chroma_http, "HANDSHAKE_TIMEOUT_S", 0.05)
    monkeypatch.setattr(chroma_http, "CONNECT_TIMEOUT_S", 0.05)
    impatient = threading.Thread(target=call)
    impatient.start()
    assert second_reached.wait(60)
    impatient.join(60)
    monkeypatch.setattr(chroma_http, "HANDSHAKE_TIMEOUT_S", 60.0)
    patient = threading.Thread(target=call)
    patient.start()
    go_on.set()
    first.join(60)
    patient.join(60)
    assert connecting == [1]  # one connection, never two at once
    assert len(made) == 1 and not made[0].closed
    gave_up = [g for g in got if isinstance(g, StoreUnavailable)]
    assert len(gave_up) == 1 and "still waiting" in str(gave_up[0])  # the impatient one
    # the first connected; the patient one got its client
    assert [g for g in got if g not in gave_up] == [made[0], made[0]]


# -- R2 4: a Chroma whose system cannot be detached ------------------------------------------
def test_a_store_whose_chroma_system_cannot_be_detached_is_closed_before_its_rebuild(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When detach failed (a Chroma laid out otherwise) the "rebuilt" store got the old
    store's cached system back: it went on writing into the damaged files set aside,
    and the new ``chroma`` folder stayed empty (the next start rebuilt it again)."""
    import sqlite3

    from desktop_app.engine.store import VectorStore

    folder = tmp_path / "photos"
    images = make_images(folder, 8, seed=12)
    run_index(lib, [folder])
    old = lib.store
    monkeypatch.setattr(VectorStore, "detach", lambda self: False)  # as for that layout
    _damaged_once(lib, monkeypatch)
    lib.catch_up_store(lib.encoder_id)  # the writer: set aside and rebuilt
    assert lib.store is not old and old.closed
    assert lib.search_image(images[3], top_k=1)[0].path == str(images[3])
    # the rebuilt vectors are in the store's own folder, not in the one set aside
    db = sqlite3.connect(lib.dirs.chroma_path / "chroma.sqlite3")
    try:
        stored = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        assert stored == sum(lib.catalog.vector_counts().values()) > 0
    finally:
        db.close()


# -- a search's side tasks ------------------------------------------------------------------
def test_a_side_task_is_joined_before_beside_returns_or_raises() -> None:
    """``beside`` hands back both results; when the main part fails, its error is the one
    raised and the side task has ended by then (it would otherwise write into a search
    the caller has already given up); a side task's own error reaches the caller."""
    from desktop_app.engine.sidetask import beside

    side_done = threading.Event()
    release = threading.Event()

    def slow_side() -> str:
        release.wait(5)
        side_done.set()
        return "side"

    def main_sets_free() -> int:
        release.set()
        return 7

    assert beside(slow_side, main_sets_free, "t") == ("side", 7)
    side_done.clear()
    release.clear()

    def failing_main() -> int:
        release.set()
        raise KeyError("main")

    with pytest.raises(KeyError, match="main"):
        beside(slow_side, failing_main, "t")
    assert side_done.is_set()

    def failing_side() -> str:
        raise ValueError("side")

    with pytest.raises(ValueError, match="side"):
        beside(failing_side, lambda: 1, "t")
    assert not [t for t in threading.enumerate() if t.name == "t"]
