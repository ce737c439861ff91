"""Shared fixtures. Every test runs with the app's directories under tmp_path, Qt on the
offscreen platform, and fails if it leaves a thread running."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
PHOTOS = sorted((FIXTURES / "photos").glob("*.jpg"))


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "app-home"
    monkeypatch.setenv("DESKTOP_APP_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = 5.0
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        extra = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not extra:
            return
        time.sleep(0.05)
    pytest.fail(f"test left threads running: {[t.name for t in extra]}")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 40 real photos (copies, free to modify)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in PHOTOS:
        shutil.copy2(p, folder / p.name)
    return folder


@pytest.fixture
def library(app_home: Path) -> Iterator[object]:
    from desktop_app.engine.library import Library
    from desktop_app.engine.settings import OFFLINE_MODEL

    lib = Library.open(model=OFFLINE_MODEL)
    yield lib
    lib.close()


def run_index(lib, paths=()):  # type: ignore[no-untyped-def]
    """Index to completion; return the summary."""
    summary = None
    for progress in lib.index(list(paths)):
        summary = progress.summary or summary
    assert summary is not None
    return summary
