"""The incremental indexer, end to end on real photos: with the fast encoder, and with
the offline model in the slow tier."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from desktop_app.engine.errors import DataDirLocked, NotIndexed
from desktop_app.engine.library import Library
from desktop_app.engine.vector_ids import vector_id

from .conftest import run_index


def paths_of(results) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.path for r in results]


def test_first_run_embeds_all_and_second_run_nothing(library: Library, photos: Path) -> None:
    s1 = run_index(library, [photos])
    assert (s1.seen, s1.embedded, s1.reused, s1.removed, s1.failed) == (40, 40, 0, 0, [])
    s2 = run_index(library, [photos])
    assert (s2.seen, s2.embedded, s2.unchanged) == (40, 0, 40)


def test_every_photo_finds_itself_first(library: Library, photos: Path) -> None:
    run_index(library, [photos])
    for i, p in enumerate(sorted(photos.iterdir())):
        full_stage, merged_stage = library.image_stages(p, top_k=3)
        for results in [full_stage()] + ([merged_stage()] if i % 8 == 0 else []):
            assert results[0].path == str(p)
            assert results[0].score >= 0.99
            assert results[0].match == "full" and results[0].region is None


def test_region_boxes_are_read_by_store_id(library: Library, photos: Path) -> None:
    run_index(library, [photos])
    enc = library.encoder_id
    regions = [r for r in library.catalog.vectors(enc, "region") if r.box is not None][:40]
    assert regions
    ids = [vector_id(r.fingerprint, "region", r.idx) for r in regions]
    got = library.catalog.region_boxes(enc, [*ids, "0" * 32 + ":0", f"{regions[0].fingerprint}:99"])
    assert got == {vid: r.box for vid, r in zip(ids, regions, strict=True)}
    assert library.catalog.region_boxes("another-encoder", ids) == {}


def test_rename_move_delete_rewrite(library: Library, photos: Path) -> None:
    run_index(library, [photos])
    files = sorted(photos.iterdir())
    renamed = [f.rename(f.with_name("renamed-" + f.name)) for f in files[:5]]
    sub = photos / "moved" / "deeper"
    sub.mkdir(parents=True)
    moved = [Path(shutil.move(f, sub / f.name)) for f in files[5:10]]
    deleted = files[10:15]
    for f in deleted:
        f.unlink()
    rewritten = files[15:18]
    for i, f in enumerate(rewritten):
        arr = np.random.default_rng(i).integers(0, 255, (120, 90, 3), np.uint8)
        Image.fromarray(arr).save(f, quality=90)

    s = run_index(library, [photos])
    assert s.embedded == len(rewritten)
    assert s.reused == len(renamed) + len(moved)
    assert s.removed == len(renamed) + len(moved) + len(deleted)

    for f in renamed + moved:
        assert library.search_image(f, top_k=1)[0].path == str(f)
    every = {r.path for f in files[18:25] for r in library.search_image(f, top_k=40)}
    for f in deleted + files[:10]:
        assert str(f) not in every
    assert library.catalog.counts()["files"] == 40 - len(deleted)


def test_identical_content_embedded_once_and_found_at_both_paths(
    library: Library, photos: Path
) -> None:
    twin = photos / "copy-of-first.jpg"
    first = sorted(photos.glob("*.jpg"))[0]
    shutil.copy2(first, twin)
    s = run_index(library, [photos])
    assert s.embedded == 40 and s.reused == 1
    top = library.search_image(first, top_k=2)
    assert {r.path for r in top} == {str(first), str(twin)}
    assert top[0].path == str(first)  # the query file itself wins the tie


def test_broken_inputs_are_listed_and_good_files_searchable(
    library: Library, tmp_path: Path, photos: Path
) -> None:
    bad = tmp_path / "mixed"
    bad.mkdir()
    good = sorted(photos.iterdir())[:3]
    for g in good:
        shutil.copy2(g, bad / g.name)
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(good[0].read_bytes()[:2500])
    (bad / "text.jpg").write_text("hello, not a jpeg")
    Image.new("1", (20000, 20000)).save(bad / "huge.png")
    Image.open(good[1]).convert("CMYK").save(bad / "cmyk.jpg")
    arr = np.asarray(Image.open(good[2]).convert("L"), np.uint16) * 257
    Image.fromarray(arr).save(bad / "sixteen.png")
    frames = [Image.open(good[0]).convert("RGB"), Image.new("RGB", (60, 60), "red")]
    frames[0].save(bad / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    locked = bad / "locked.jpg"
    shutil.copy2(sorted(photos.iterdir())[5], locked)
    locked.chmod(0)

    s = run_index(library, [bad])
    reasons = dict(s.failed)
    assert "empty file" in reasons[str(bad / "zero.jpg")]
    assert "truncated" in reasons[str(bad / "truncated.jpg")]
    assert "not an image" in reasons[str(bad / "text.jpg")]
    assert "MP limit" in reasons[str(bad / "huge.png")]
    if os.geteuid() != 0:  # root reads any file, so only a normal user sees the error
        assert "permission denied" in reasons[str(locked)]
    for ok in ("cmyk.jpg", "sixteen.png", "anim.gif"):
        assert str(bad / ok) not in reasons
    status = library.status(load_encoder=False)
    assert {f.path for f in status.failures} == set(reasons)
    for g in good:
        assert library.search_image(bad / g.name, top_k=1)[0].path == str(bad / g.name)
    for ok in ("cmyk.jpg", "sixteen.png", "anim.gif"):
        assert library.search_image(bad / ok, top_k=1)[0].path == str(bad / ok)


def test_vector_index_rebuilds_from_catalog(library: Library, photos: Path, model: str) -> None:
    run_index(library, [photos])
    library.close()
    shutil.rmtree(library.dirs.chroma_path)
    lib = Library.open(model=model)
    try:
        s = run_index(lib, [photos])
        assert s.embedded == 0
        first = sorted(photos.iterdir())[0]
        assert lib.search_image(first, top_k=1)[0].path == str(first)
        assert lib.store.count(model) == 40
    finally:
        lib.close()
        library.__init__(lib.dirs, model=model)  # reopen for the fixture's close()


def test_deferred_store_opens_on_first_use_and_still_rebuilds(
    library: Library, photos: Path, model: str
) -> None:
    """The window opens its library with the store deferred (it paints before Chroma
    loads): nothing is opened until asked, and the first use still checks and rebuilds
    a store whose folder went missing, with nothing re-embedded."""
    run_index(library, [photos])
    library.close()
    shutil.rmtree(library.dirs.chroma_path)
    lib = Library(library.dirs, model=model, defer_store=True)
    try:
        assert not library.dirs.chroma_path.exists()  # not opened, so not rebuilt yet
        first = sorted(photos.iterdir())[0]
        assert lib.search_image(first, top_k=1)[0].path == str(first)
        assert lib.store_health.startswith("rebuilt from the catalog")
        assert run_index(lib, [photos]).embedded == 0
    finally:
        lib.close()
    unused = Library(library.dirs, model=model, defer_store=True)
    unused.close()  # never opened: closing it must not open it
    library.__init__(library.dirs, model=model)  # reopen for the fixture's close()


def test_find_similar_uses_stored_vector(library: Library, photos: Path) -> None:
    run_index(library, [photos])
    first = sorted(photos.iterdir())[0]
    by_path = library.search_similar(first, top_k=5)
    by_image = library.search_image(first, top_k=5)
    assert by_path[0].path == by_image[0].path == str(first)
    assert by_path[0].score >= 0.99
    assert len(set(paths_of(by_path)) & set(paths_of(by_image))) >= 3
    with pytest.raises(NotIndexed):
        library.search_similar(photos / "not-there.jpg")


def test_threshold_and_top_k(library: Library, photos: Path) -> None:
    run_index(library, [photos])
    first = sorted(photos.iterdir())[0]
    assert len(library.search_image(first, top_k=7)) == 7
    strict = library.search_image(first, top_k=40, threshold=0.999)
    assert paths_of(strict) == [str(first)]


def test_cancel_stops_between_batches_and_keeps_work(library: Library, photos: Path) -> None:
    cancel = threading.Event()
    summary = None
    for progress in library.index([photos], cancel=cancel):
        if progress.phase == "indexing" and progress.embedded > 0:
            cancel.set()
        summary = progress.summary or summary
    assert summary is not None and summary.cancelled
    assert 0 < summary.embedded < 40
    again = run_index(library, [photos])
    assert again.embedded + summary.embedded == 40


def test_offline_folder_keeps_entries(library: Library, photos: Path, tmp_path: Path) -> None:
    run_index(library, [photos])
    away = tmp_path / "unplugged"
    photos.rename(away)
    s = run_index(library)  # every library folder
    assert s.offline == [str(photos)] and s.removed == 0
    assert library.catalog.counts()["files"] == 40
    away.rename(photos)
    s = run_index(library)
    assert s.unchanged == 40 and s.embedded == 0


def test_forget_removes_folder_and_vectors(library: Library, photos: Path) -> None:
    run_index(library, [photos])
    assert library.forget(photos) == 40
    assert library.roots() == []
    assert library.catalog.counts()["files"] == 0
    assert library.store.count(library.encoder_id) == 0


def test_second_process_gets_clear_message(library: Library, model: str) -> None:
    with pytest.raises(DataDirLocked, match="in use by another desktop-app process"):
        Library.open(model=model)


def _can_lower_a_thread() -> bool:
    def lower() -> None:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + 1))

    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lower).result()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_headless_loader_threads_yield_the_cores_after_the_model_is_built(
    library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a window the loader threads decode at a lower priority (they fill the
    cores the encoder's pool leaves idle instead of stalling it), but the model, whose
    thread pools copy their creator's priority, is built before that; the indexing
    thread keeps its own. In the window nothing is lowered."""
    if not _can_lower_a_thread():
        pytest.skip("this sandbox refuses setpriority")
    from desktop_app.engine import analysis
    from desktop_app.engine.headless import headless
    from desktop_app.engine.indexer import LOADER_NICE

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict[str, set[int]] = {"prepare": set()}
    for cls in (analysis.Analyser, analysis.RegionAnalyser):
        real = cls.__dict__["prepare"]

        def prepare(self: analysis.Analyser, *args: object, _real: Any = real) -> object:
            seen["prepare"].add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return _real(self, *args)

        monkeypatch.setattr(cls, "prepare", prepare)
    with headless():
        assert run_index(library, [photos]).embedded == 40
    assert seen["prepare"] == {min(19, mine + LOADER_NICE)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    library.forget(photos)
    seen["prepare"].clear()
    run_index(library, [photos])  # as the window runs it
    assert seen["prepare"] == {mine}


def test_command_line_writes_the_store_in_large_chunks(library: Library) -> None:
    """Without a window (``headless``, around every command) a batch's vectors go to
    Chroma in a few large calls; otherwise in small ones, so no Chroma call holds the GIL
    for long while the window needs it. The same vectors either way."""
    from desktop_app.engine import store as store_module
    from desktop_app.engine.headless import headless, is_headless

    calls: list[int] = []
    real_collection = store_module.VectorStore.collection

    class Counting:
        def __init__(self, col: object) -> None:
            self.col = col

        def upsert(self, **kwargs: list[str]) -> None:
            calls.append(len(kwargs["ids"]))
            self.col.upsert(**kwargs)  # type: ignore[attr-defined]

    def collection(self: object, encoder_id: str, kind: str = "full") -> object:
        return Counting(real_collection(self, encoder_id, kind))  # type: ignore[arg-type]

    vectors = np.random.default_rng(3).standard_normal((320, 8)).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.VectorStore, "collection", collection)
        library.store.upsert("chunks", [f"w{i}" for i in range(320)], vectors)
        window = list(calls)
        calls.clear()
        with headless():
            library.store.upsert("chunks", [f"h{i}" for i in range(320)], vectors)
        headless = list(calls)
    assert max(window) == store_module.WRITE_CHUNK and sum(window) == 320
    assert max(headless) == store_module.HEADLESS_WRITE_CHUNK and len(headless) == 2
    assert not is_headless()  # restored on leaving
    assert library.store.count("chunks") == 640
