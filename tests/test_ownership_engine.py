"""Thread-ownership faults of the engine (issue 9's review, second pass), each shown fixed.

Fast tier: the ``histogram`` encoder. No Qt here: the engine is used from plain threads,
as the window's pools and worker use it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from desktop_app.engine import indexer as indexer_module
from desktop_app.engine.library import Library
from desktop_app.engine.settings import HISTOGRAM_MODEL

from .conftest import run_index

MODEL = HISTOGRAM_MODEL


@pytest.fixture
def lib(app_home: Path) -> Iterator[Library]:
    library = Library.open(model=MODEL)
    yield library
    library.close()


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = folder / f"img-{seed}-{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(p)
        out.append(p)
    return out


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

        def failing_once(encoder_id: str | None = None) -> int:
            calls.append(1)
            if len(calls) == 1:
                raise StoreDamaged("the vector index failed to count its vectors (test)")
            return real_sync(encoder_id)

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
