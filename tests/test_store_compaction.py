"""The vector index stays the size of the library while photos come and go: Chroma never
reuses a deleted vector's slot, so the library compacts the store (rebuilds it from the
catalog beside the published one) once deleted entries outweigh the live ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_app.engine import library as library_module
from desktop_app.engine.library import Library
from desktop_app.engine.settings import HISTOGRAM_MODEL
from desktop_app.engine.store import hnsw_elements

from .conftest import run_index
from .store_check import assert_consistent
from .test_faults import make_images

ROUNDS = 6
PER_ROUND = 12


def churn(lib: Library, folder: Path, rounds: int) -> list[Path]:
    """Replace every photo of ``folder`` by new ones, ``rounds`` times, indexing each."""
    images: list[Path] = []
    for r in range(rounds):
        for old in images:
            old.unlink()
        images = make_images(folder, PER_ROUND, seed=100 + r)
        run_index(lib, [folder])
    return images


def test_photos_that_come_and_go_leave_the_index_the_size_of_the_library(
    app_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library_module, "COMPACT_MIN_DEAD", 50)
    folder = tmp_path / "photos"
    with Library.open(model=HISTOGRAM_MODEL) as lib:
        images = churn(lib, folder, ROUNDS)
        live = lib.store.live_vectors()
        # without compaction: ROUNDS × live (every round's vectors kept as deleted entries)
        assert hnsw_elements(lib.dirs.chroma_path) <= 2 * live + 50 + 100  # + a sync's lag
        assert_consistent(lib, folder)
        for image in images[:3]:
            assert lib.search_image(image, top_k=1)[0].path == str(image)
        assert run_index(lib, [folder]).embedded == 0  # nothing re-embedded to compact
    leftovers = sorted(p.name for p in lib.dirs.data.glob("chroma.*"))
    assert leftovers == []


def test_compaction_keeps_every_vector_and_survives_a_reopen(
    app_home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    with Library.open(model=HISTOGRAM_MODEL) as lib:
        images = churn(lib, folder, 2)
        kinds = sorted({kind for _enc, kind in lib.catalog.vector_counts()})
        before = {kind: lib.store.ids(HISTOGRAM_MODEL, kind) for kind in kinds}
        assert lib.compact_store(force=True)
        assert hnsw_elements(lib.dirs.chroma_path) <= lib.store.live_vectors() + 100
        assert {kind: lib.store.ids(HISTOGRAM_MODEL, kind) for kind in kinds} == before
        assert lib.reads.published is lib.store
        assert lib.search_image(images[0], top_k=1)[0].path == str(images[0])
        assert not lib.compact_store()  # nothing deleted since: nothing to do
        data = lib.dirs.data
    with Library.open(data, model=HISTOGRAM_MODEL) as again:
        assert again.store_health == "ok"
        assert again.search_image(images[1], top_k=1)[0].path == str(images[1])
        assert_consistent(again, folder)
