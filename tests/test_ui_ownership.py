"""Thread-ownership faults of the window (issue 9's review, second pass), each with a test
that failed before its fix. Fast tier: the ``histogram`` encoder; nothing waits on a
sleep or asserts a time."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.engine.library import Library
from desktop_app.engine.paths import resolve_dirs
from desktop_app.engine.settings import HISTOGRAM_MODEL, Settings
from desktop_app.ui.controller import SearchController
from desktop_app.ui.worker import IndexJob, IndexWorker

from .conftest import PHOTOS

TIMEOUT = 240_000  # generous for a loaded machine; a pass takes seconds


@pytest.fixture
def library(app_home: Path) -> Iterator[Library]:
    s = Settings(model=HISTOGRAM_MODEL)
    s.save(app_home / "config" / "settings.json")
    lib = Library(resolve_dirs(), s)
    yield lib
    lib.close()


@pytest.fixture
def few_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "few"
    folder.mkdir()
    for p in PHOTOS[:6]:
        shutil.copy2(p, folder / p.name)
    return folder


def start_controller(qtbot: QtBot, library: Library) -> SearchController:
    c = SearchController(library)
    with qtbot.waitSignal(c.encoder_ready, timeout=TIMEOUT):
        c.start(watch=False)
    return c


@pytest.fixture
def controller(qtbot: QtBot, library: Library) -> Iterator[SearchController]:
    c = start_controller(qtbot, library)
    yield c
    c.shutdown()


# -- 8: one cancel stopped every job merged into the same run --------------------------------
def test_a_cancel_stops_its_own_job_not_the_next_one_in_the_same_run(
    qtbot: QtBot, library: Library, few_photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = IndexWorker(library)
    real_index = library.index
    runs: list[list[str]] = []

    def index(paths: Any = (), cancel: threading.Event | None = None, **kw: Any) -> Any:
        runs.append([str(p) for p in paths])
        if len(runs) == 1:
            assert cancel is not None
            cancel.set()  # the user pressed Cancel while the first job ran
        return real_index(paths, cancel, **kw)

    monkeypatch.setattr(library, "index", index)
    # queued before the thread starts: both are taken into one run (not merged: the
    # second has no paths, it checks every library folder)
    w.submit(IndexJob([str(few_photos)]))
    w.submit(IndexJob([], add=False))
    summaries: list[Any] = []
    w.finished.connect(summaries.append)
    with qtbot.waitSignal(w.status, timeout=TIMEOUT):
        w.start()
    assert w.stop()
    assert len(runs) == 2
    assert [s.cancelled for s in summaries] == [True, False]
    assert library.catalog.counts()["files"] == 6  # the second job indexed them
