"""A library shared through a real Chroma server (``chroma run`` on 127.0.0.1): two
clients with their own data dirs index into it and find each other's photos by crops;
the server going away mid-index loses and doubles nothing; push and pull move a library
between the embedded store and the server without embedding anything."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from desktop_app.cli import main
from desktop_app.engine.library import Library
from desktop_app.engine.remote import FEATURES, FILES, StoreUnavailable
from desktop_app.engine.settings import Settings
from desktop_app.engine.transfer import pull, push
from desktop_app.engine.vector_ids import vector_id

from .conftest import FAST_MODEL, PHOTOS, run_index

CHROMA = Path(sys.executable).parent / "chroma"
if not CHROMA.exists() and shutil.which("chroma"):
    CHROMA = Path(str(shutil.which("chroma")))

needs_chroma = pytest.mark.skipif(
    not CHROMA.exists(),
    reason="the `chroma` command (installed with chromadb) is not next to this Python",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    """``chroma run`` in a subprocess; stop and start it again on the same port."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = path.parent / "chroma.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [CHROMA, "run", "--path", str(self.path), "--port", str(self.port)]
                + ["--host", "127.0.0.1"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("chroma run did not start listening within 60 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    srv = ChromaServer(tmp_path / "chroma-server")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def open_client(data: Path, machine: str, url: str, **settings: object) -> Library:
    s = Settings(model=FAST_MODEL, machine_name=machine, **settings)  # type: ignore[arg-type]
    return Library.open(data, settings=s, store_url=url)


def folder_of(tmp_path: Path, name: str, photos: list[Path]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for p in photos:
        shutil.copy2(p, folder / p.name)
    return folder


def crop(photo: Path, dest: Path) -> Path:
    """The middle half of a photo, downscaled: a partial match of its source only."""
    im = Image.open(photo).convert("RGB")
    w, h = im.size
    part = im.crop((w // 4, h // 5, w // 4 + w // 2, h // 5 + h // 2))
    part.resize((part.width * 3 // 4, part.height * 3 // 4)).save(dest, quality=90)
    return dest


def server_state(lib: Library) -> dict[str, set[str]]:
    """Every id on the server, per collection."""
    remote = lib.remote
    assert remote is not None
    out = {kind: remote.ids(FAST_MODEL, kind) for kind in ("full", "region")}
    for name in (FILES, FEATURES):
        col = remote._aux(name)
        out[name] = set(col.get(include=[], limit=100_000)["ids"])
    return out


def catalog_ids(lib: Library, kind: str) -> set[str]:
    return {vector_id(r.fingerprint, kind, r.idx) for r in lib.catalog.vectors(FAST_MODEL, kind)}


@needs_chroma
def test_two_clients_share_one_library(tmp_path: Path, server: ChromaServer) -> None:
    a_only, b_only, both = PHOTOS[:12], PHOTOS[12:24], PHOTOS[24:30]
    folder_a = folder_of(tmp_path, "alpha-photos", a_only)
    folder_b = folder_of(tmp_path, "beta-photos", b_only)
    shared = folder_of(tmp_path, "shared", both)  # the same share, seen by both
    alpha = open_client(tmp_path / "alpha-data", "alpha", server.url)
    beta = open_client(tmp_path / "beta-data", "beta", server.url)
    try:
        assert run_index(alpha, [folder_a, shared]).embedded == 18
        assert run_index(beta, [folder_b, shared]).embedded == 18
        # content is identity: the shared folder's six photos are stored once
        state = server_state(beta)
        assert len(state["full"]) == 30
        assert state["full"] == catalog_ids(alpha, "full") | catalog_ids(beta, "full")
        assert state["region"] == catalog_ids(alpha, "region") | catalog_ids(beta, "region")
        assert len(state[FEATURES]) == 30
        assert len(state[FILES]) == 12 + 12 + 2 * 6  # one entry per file per machine

        for client, other, photos, host in (
            (beta, folder_a, a_only, "alpha"),
            (alpha, folder_b, b_only, "beta"),
        ):
            for photo in photos[:3]:
                query = crop(photo, tmp_path / f"crop-{host}-{photo.name}")
                results = client.search_image(query, top_k=5)
                top = results[0]
                assert top.path == str(other / photo.name), [r.path for r in results]
                assert top.match == "partial" and top.region is not None
                assert top.host == host  # shown as another machine's photo
                assert top.to_json()["host"] == host

        # a region's box, read by its store id: the other machine's from the server
        ours = beta.catalog.fingerprints_with_vectors(FAST_MODEL, "region")
        theirs = next(
            r
            for r in alpha.catalog.vectors(FAST_MODEL, "region")
            if r.box and r.fingerprint not in ours
        )
        rid = vector_id(theirs.fingerprint, "region", theirs.idx)
        assert beta.catalog.region_boxes(FAST_MODEL, [rid]) == {}
        assert beta.reader.region_boxes(FAST_MODEL, [rid, "nothing:0"]) == {rid: theirs.box}

        # the shared folder: found once, as this machine's own file
        query = crop(both[0], tmp_path / "crop-shared.jpg")
        results = alpha.search_image(query, top_k=10)
        assert results[0].path == str(shared / both[0].name)
        assert results[0].host is None and results[0].here
        assert [r.path for r in results].count(results[0].path) == 1

        # find similar on a photo only the other machine indexed
        similar = beta.search_similar(folder_a / a_only[0].name, top_k=3)
        assert similar[0].path == str(folder_a / a_only[0].name)
        assert similar[0].host == "alpha"

        # one machine forgets its folder: the other's photos and the share stay
        alpha.forget(folder_a)
        state = server_state(beta)
        assert len(state["full"]) == 12 + 6
        assert state["full"] == catalog_ids(alpha, "full") | catalog_ids(beta, "full")
        assert len(state[FILES]) == 12 + 2 * 6 and len(state[FEATURES]) == 12 + 6
        assert beta.search_image(crop(a_only[1], tmp_path / "gone.jpg"), top_k=3)[0].path != str(
            folder_a / a_only[1].name
        )
    finally:
        alpha.close()
        beta.close()


@needs_chroma
def test_server_stopping_mid_index_loses_and_doubles_nothing(
    tmp_path: Path, server: ChromaServer
) -> None:
    folder = folder_of(tmp_path, "photos", PHOTOS[:24])
    lib = open_client(tmp_path / "data", "alpha", server.url, batch_size=4)
    try:
        errors = []
        for seen, progress in enumerate(lib.index([folder]), 1):
            if seen == 6:  # a few batches are up
                server.stop()
            if seen == 16:  # more were embedded while it was down
                server.start()
            if progress.store_error:
                errors.append(progress.store_error)
            summary = progress.summary
        assert summary is not None
        assert summary.embedded == 24 and summary.unsynced == 0
        assert summary.store_error is None
        assert errors and "cannot reach the Chroma server" in errors[0]

        state = server_state(lib)
        assert state["full"] == catalog_ids(lib, "full")
        assert len(state["full"]) == 24
        assert state["region"] == catalog_ids(lib, "region")
        assert lib.remote is not None and lib.remote.count(FAST_MODEL, "region") == len(
            state["region"]
        )
        assert len(state[FILES]) == 24 and len(state[FEATURES]) == 24

        # down for the whole run: everything is kept locally and goes up next time
        server.stop()
        more = folder_of(tmp_path, "more", PHOTOS[24:30])
        summary = run_index(lib, [more])
        assert summary.embedded == 6
        assert summary.unsynced > 0
        assert summary.store_error is not None and server.url in summary.store_error
        with pytest.raises(StoreUnavailable, match="cannot reach the Chroma server"):
            lib.search_image(PHOTOS[0])
        assert lib.status(load_encoder=False).store["online"] is False  # type: ignore[index]

        server.start()
        summary = run_index(lib)
        assert summary.embedded == 0 and summary.unsynced == 0
        state = server_state(lib)
        assert state["full"] == catalog_ids(lib, "full") and len(state["full"]) == 30
        assert state["region"] == catalog_ids(lib, "region")
        assert len(state[FILES]) == 30 and len(state[FEATURES]) == 30
        top = lib.search_image(crop(PHOTOS[26], tmp_path / "c.jpg"), top_k=3)[0]
        assert top.path == str(more / PHOTOS[26].name) and top.match == "partial"
    finally:
        lib.close()


@needs_chroma
def test_command_line_says_plainly_when_the_server_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_of(tmp_path, "photos", PHOTOS[:4])
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    data = ["--data-dir", str(tmp_path / "data"), "--model", FAST_MODEL, "--store-url", url]
    assert main(["index", str(folder), *data, "--json"]) == 0
    out, err = capsys.readouterr()
    assert "cannot reach the Chroma server" in err and "Traceback" not in err
    assert '"unsynced": ' in out.splitlines()[-1]
    assert main(["search", str(PHOTOS[0]), *data]) == 1
    out, err = capsys.readouterr()
    assert f"cannot reach the Chroma server at {url}" in err and "Traceback" not in err
    assert main(["status", *data]) == 0
    out, err = capsys.readouterr()
    assert "NOT REACHABLE" in out and "changes waiting for upload" in out
    assert main(["store", "push", "--to", url, "--data-dir", str(tmp_path / "data")]) == 1
    assert "cannot reach the Chroma server" in capsys.readouterr().err
    assert main(["search", str(PHOTOS[0]), *data[:4], "--store-url", "ftp://x"]) == 1
    assert "http://HOST:PORT" in capsys.readouterr().err


@needs_chroma
def test_push_and_pull_move_a_library_without_embedding(
    tmp_path: Path, server: ChromaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_of(tmp_path, "photos", PHOTOS[:20])
    data = tmp_path / "embedded-data"
    with Library.open(data, settings=Settings(model=FAST_MODEL)) as lib:
        run_index(lib, [folder])
        full, region = catalog_ids(lib, "full"), catalog_ids(lib, "region")
    assert main(["store", "push", "--to", server.url, "--data-dir", str(data), "--json"]) == 0
    import json

    pushed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert pushed["embedded"] == 0 and pushed["contents"] == 20 and pushed["files"] == 20
    assert pushed["vectors"] == len(full) + len(region)

    # a second client finds every pushed photo by a crop of it
    with open_client(tmp_path / "second", "second", server.url) as other:
        assert server_state(other)["full"] == full
        for photo in PHOTOS[:20:4]:
            top = other.search_image(crop(photo, tmp_path / f"q-{photo.name}"), top_k=3)[0]
            assert top.path == str(folder / photo.name) and top.match == "partial"

    # and pull brings it back into a fresh embedded library, nothing embedded
    fresh = tmp_path / "pulled-data"
    summary = pull(fresh, server.url)
    assert summary.embedded == 0 and summary.files == 20
    with Library.open(fresh, settings=Settings(model=FAST_MODEL)) as lib:
        assert lib.remote is None
        assert catalog_ids(lib, "full") == full and catalog_ids(lib, "region") == region
        assert lib.store.count(FAST_MODEL, "full") == 20
        top = lib.search_image(crop(PHOTOS[3], tmp_path / "p.jpg"), top_k=3)[0]
        assert top.path == str(folder / PHOTOS[3].name) and top.match == "partial"
        assert run_index(lib).embedded == 0  # the files are known: nothing to redo

    again = push(data, server.url)  # pushing twice doubles nothing
    assert again.embedded == 0
    with open_client(tmp_path / "third", "third", server.url) as other:
        assert len(server_state(other)["full"]) == 20


def test_another_machines_photo_is_labelled_and_opens_only_where_it_exists(
    qtbot,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from PySide6.QtCore import QThreadPool

    from desktop_app.engine.search import SearchResult
    from desktop_app.ui.results_model import ResultsModel, tooltip
    from desktop_app.ui.results_view import ResultsView
    from desktop_app.ui.thumbnails import ThumbnailCache

    pool = QThreadPool()
    model = ResultsModel(ThumbnailCache(tmp_path / "thumbs", pool))
    view = ResultsView(model)
    qtbot.addWidget(view)
    shared = SearchResult(str(PHOTOS[0]), 0.9, host="alpha")  # a share mounted here too
    away = SearchResult(str(tmp_path / "only-on-alpha" / "photo.jpg"), 0.8, host="alpha")
    model.set_results([shared, away])
    try:
        enabled = {a.text(): a.isEnabled() for a in view.build_menu(1).actions() if a.text()}
        assert not enabled["Open"] and not enabled["Show in folder"]
        assert enabled["Copy path"] and enabled["Find similar"]
        assert "indexed on alpha; not on this machine" in tooltip(away)
        assert all(a.isEnabled() for a in view.build_menu(0).actions() if a.text() == "Open")
        assert "indexed on alpha" in tooltip(shared) and "not on this" not in tooltip(shared)
    finally:
        pool.waitForDone()


def test_status_bar_says_when_uploads_wait(qtbot) -> None:  # type: ignore[no-untyped-def]
    from desktop_app.engine.indexer import Progress
    from desktop_app.ui.statusbar import IndexStatusBar

    bar = IndexStatusBar()
    qtbot.addWidget(bar)
    bar.show_progress(Progress("indexing", 1, 2, "/x/a.jpg", 1, 0, 0, store_error="cannot reach"))
    assert bar.currentMessage() == "Uploads paused: cannot reach"


@needs_chroma
def test_a_chromadb_with_another_http_client_layout_still_connects(
    server: ChromaServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The timeout patch hard-coded 1.5.9's ``FastAPI.__init__(self, system)`` and its
    private ``_session``: a chromadb laid out otherwise made every connect raise an
    AttributeError (or TypeError) that nothing turned into a message."""
    from chromadb.api.fastapi import FastAPI

    from desktop_app.engine import chroma_http
    from desktop_app.engine.remote import RemoteVectorStore

    stock = FastAPI.__init__

    class OtherSession:
        """Another chromadb's session: not an httpx.Client, its timeout not settable."""

        __slots__ = ("_inner",)

        def __init__(self, inner: object) -> None:
            object.__setattr__(self, "_inner", inner)

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        def __setattr__(self, name: str, value: object) -> None:
            raise AttributeError(f"{name} cannot be set")

    def other_init(self: FastAPI, system: object, *args: object, **kwargs: object) -> None:
        stock(self, system)  # type: ignore[arg-type]
        self._session = OtherSession(self._session)  # type: ignore[assignment]

    monkeypatch.setattr(FastAPI, "__init__", other_init)
    monkeypatch.setattr(chroma_http, "_installed", False)  # wrap this chromadb's init
    monkeypatch.setattr(chroma_http, "_warned", threading.Event(), raising=False)
    store = RemoteVectorStore(server.url)
    try:
        with caplog.at_level(logging.WARNING, logger="desktop_app.engine.chroma_http"):
            assert store.count("enc") == 0
            store.ping()
            other = RemoteVectorStore(server.url)
            try:
                other.ping()
            finally:
                other.close()
    finally:
        store.close()
    said = [r.getMessage() for r in caplog.records if "handshake" in r.getMessage()]
    assert len(said) == 1 and "OtherSession" in said[0]  # said once, not per connection
