"""The vector index stays the size of the library while photos come and go: Chroma never
reuses a deleted vector's slot, so the library compacts the store (rebuilds it from the
catalog beside the published one) once deleted entries outweigh the live ones."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from desktop_app.engine import library as library_module
from desktop_app.engine.errors import DiskFull
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


def test_a_compaction_that_fails_or_is_cancelled_leaves_the_store_as_it_was(
    app_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while the copy fills, a cancel between pages, a folder that cannot be
    renamed (Windows, a detached search): each leaves the published store answering,
    no copy behind, and indexing goes on."""
    folder = tmp_path / "photos"
    with Library.open(model=HISTOGRAM_MODEL) as lib:
        images = churn(lib, folder, 2)

        def disk_full(*args: object) -> None:
            raise DiskFull("no space left on the disk")

        with monkeypatch.context() as m:
            m.setattr(Library, "_copy_page", staticmethod(disk_full))
            assert not lib.compact_store(force=True)
        cancel = threading.Event()
        cancel.set()
        assert not lib.compact_store(force=True, cancel=cancel)
        real_replace = os.replace

        def refuse_second(src: object, dst: object) -> None:
            if str(src).endswith(library_module.COMPACTING):
                raise PermissionError("in use")
            real_replace(src, dst)  # type: ignore[arg-type]

        with monkeypatch.context() as m:
            m.setattr(library_module.os, "replace", refuse_second)
            assert not lib.compact_store(force=True)
        assert lib.reads.published is lib.store and not lib.store.closed
        assert lib.search_image(images[0], top_k=1)[0].path == str(images[0])
        assert sorted(p.name for p in lib.dirs.data.glob("chroma.*")) == []
        churn(lib, folder, 1)  # indexing goes on
        assert_consistent(lib, folder)


def test_a_compaction_cut_short_between_its_renames_is_finished_at_the_next_start(
    app_home: Path, tmp_path: Path
) -> None:
    """Killed after the store's folder moved aside and before the complete copy moved
    in: the next start takes the copy (no rebuild, nothing re-embedded), and drops the
    leftovers."""
    folder = tmp_path / "photos"
    with Library.open(model=HISTOGRAM_MODEL) as lib:
        images = churn(lib, folder, 1)
        path = lib.dirs.chroma_path
    shutil.copytree(path, path.with_name(library_module.COMPACTING))  # the complete copy
    os.replace(path, path.with_name(library_module.BEFORE_COMPACTION))
    with Library.open(path.parent, model=HISTOGRAM_MODEL) as again:
        assert again.store_health == "ok"
        assert again.search_image(images[0], top_k=1)[0].path == str(images[0])
        assert_consistent(again, folder)
        assert run_index(again, [folder]).embedded == 0
    assert sorted(p.name for p in path.parent.glob("chroma.*")) == []
