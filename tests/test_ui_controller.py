"""The window's controller without a window: the flow (queries, history, stages, limits,
folders, settings) driven with the fast histogram encoder, asserted through its state and
the signals the widgets listen to."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.engine.library import Library
from desktop_app.engine.settings import Settings
from desktop_app.ui.controller import Page, SearchController

from . import test_ui_reliability as reliability

TIMEOUT = 120_000  # generous for a loaded machine; a pass takes seconds


class Recorder:
    """Every emission of the controller's view-facing signals, in order."""

    def __init__(self, c: SearchController) -> None:
        self.described: list[str] = []
        self.pages: list[int] = []
        self.history: list[tuple[bool, bool]] = []
        self.messages: list[str] = []
        self.limits: list[tuple[int, float]] = []
        self.hints: list[str] = []
        self.stages: list[int] = []  # result count of every stage shown
        c.query_described.connect(self.described.append)
        c.page_changed.connect(self.pages.append)
        c.history_changed.connect(lambda back, fwd: self.history.append((back, fwd)))
        c.message.connect(lambda text, _ms: self.messages.append(text))
        c.limits_changed.connect(lambda k, t: self.limits.append((k, t)))
        c.query_hint.connect(self.hints.append)
        c.results_shown.connect(lambda _q, results, _s: self.stages.append(len(results)))


# the controller on a fast-encoder library, as the reliability tests set it up (fixtures)
library = reliability.library
controller = reliability.controller


@pytest.fixture
def indexed(controller: SearchController, photos: Path, qtbot: QtBot) -> Path:
    controller.add_folder(str(photos))
    qtbot.waitUntil(lambda: files_indexed(controller) == 40, timeout=TIMEOUT)
    return photos


def files_indexed(c: SearchController) -> int | None:
    """The image count of the worker's latest status; None before the first one."""
    return c.last_status.files if c.last_status else None


def search(qtbot: QtBot, c: SearchController, start: object) -> None:
    with qtbot.waitSignal(c.searcher.completed, timeout=TIMEOUT):
        start()  # type: ignore[operator]


def test_pages_follow_library_and_query(
    controller: SearchController, photos: Path, qtbot: QtBot
) -> None:
    seen = Recorder(controller)
    assert controller.page() == Page.EMPTY_LIBRARY
    controller.add_folder(str(photos))
    # the folder counts at once, before indexing finishes
    assert seen.pages[-1] == Page.NO_QUERY
    assert [r["path"] for r in controller.roots] == [str(photos.resolve())]
    qtbot.waitUntil(lambda: files_indexed(controller) == 40, timeout=TIMEOUT)
    search(qtbot, controller, lambda: controller.search_file(sorted(photos.glob("*.jpg"))[0]))
    assert seen.pages[-1] == Page.RESULTS
    assert controller.model.rowCount() == 40


def test_search_describes_itself_and_shows_every_stage(
    controller: SearchController, indexed: Path, qtbot: QtBot
) -> None:
    seen = Recorder(controller)
    query = sorted(indexed.glob("*.jpg"))[3]
    search(qtbot, controller, lambda: controller.search_file(query))
    assert seen.described[0] == f"Searching {query.name}…"
    assert seen.described[-1].startswith(f"{query.name}: 40 results in ")
    assert seen.stages and seen.stages[-1] == 40  # each stage is the whole list so far
    assert controller.current is not None and controller.current.kind == "image"
    assert controller.model.result(0).path == str(query)
    # the query image for the drop zone arrives decoded, with its full size
    with qtbot.waitSignal(controller.query_image, timeout=TIMEOUT) as got:
        controller.search_file(query)
    image, region, full_size = got.args
    assert not image.isNull() and region is None and full_size[0] >= image.width()


def test_history_back_and_forward_rerun_earlier_queries(
    controller: SearchController, indexed: Path, qtbot: QtBot
) -> None:
    seen = Recorder(controller)
    files = sorted(indexed.glob("*.jpg"))
    search(qtbot, controller, lambda: controller.search_file(files[0]))
    first = controller.current
    assert seen.history[-1] == (False, False)
    target = controller.model.result(7)
    search(qtbot, controller, lambda: controller.find_similar(target))
    assert controller.current is not None and controller.current.kind == "similar"
    assert controller.model.result(0).path == target.path
    assert seen.history[-1] == (True, False)
    search(qtbot, controller, controller.back)
    assert controller.current is first
    assert controller.model.result(0).path == str(files[0])
    assert seen.history[-1] == (False, True)
    search(qtbot, controller, controller.forward)
    assert controller.current is not None and controller.current.kind == "similar"
    assert seen.history[-1] == (True, False)
    # going back past the start does nothing
    controller.back()
    controller.back()
    assert controller.current is first
    controller.back()
    assert controller.current is first


def test_limits_rerun_the_current_query_without_a_history_entry(
    controller: SearchController, indexed: Path, qtbot: QtBot
) -> None:
    seen = Recorder(controller)
    search(qtbot, controller, lambda: controller.search_file(sorted(indexed.glob("*.jpg"))[0]))
    before = controller.current
    history = list(seen.history)
    with qtbot.waitSignal(controller.searcher.completed, timeout=TIMEOUT):
        controller.set_limits(5, 0.0)
        controller.set_limits(5, 0.99)  # a slider still moving: one search when it rests
    assert controller.current is before
    assert before is not None and (before.top_k, before.threshold) == (5, 0.99)
    scores = [r.score for r in controller.model.results()]
    assert 1 <= len(scores) < 40 and min(scores) >= 0.99
    assert seen.history == history  # not recorded again
    # an unchanged limit does not search again
    controller.set_limits(5, 0.99)
    assert not controller._rerun.isActive()


def test_region_search_keeps_the_query_image_and_adds_the_region(
    controller: SearchController, indexed: Path, qtbot: QtBot
) -> None:
    controller.search_region((0, 0, 50, 50))  # no query yet: nothing to take a region of
    assert controller.current is None
    query = sorted(indexed.glob("*.jpg"))[2]
    search(qtbot, controller, lambda: controller.search_file(query))
    search(qtbot, controller, lambda: controller.search_region((10, 20, 100, 80)))
    q = controller.current
    assert q is not None and q.kind == "image" and q.path == str(query)
    assert q.region == (10, 20, 100, 80)
    assert controller.history.can_back()


def test_text_search_waits_for_a_text_encoder(controller: SearchController) -> None:
    assert not controller.has_text  # the histogram encoder has no text tower
    controller.search_text("a red dress")
    assert controller.current is None


def test_a_bad_query_file_gets_a_clear_message(
    controller: SearchController, indexed: Path, qtbot: QtBot, tmp_path: Path
) -> None:
    seen = Recorder(controller)
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a picture")
    with qtbot.waitSignal(controller.searcher.failed, timeout=TIMEOUT):
        controller.search_file(bad)
    qtbot.waitUntil(lambda: bool(seen.hints), timeout=TIMEOUT)
    assert seen.described[-1].startswith("notes.jpg: ")
    assert seen.messages and "notes.jpg" in seen.messages[-1]
    assert "notes.jpg" in seen.hints[-1]


def test_settings_changes_go_through_the_controller_and_are_saved(
    controller: SearchController, library: Library
) -> None:
    seen = Recorder(controller)
    new = Settings(**{**library.settings.__dict__})
    new.top_k = 12
    controller.apply_settings(new)
    assert seen.limits == [(12, controller.threshold)]
    assert Settings.load(library.dirs.settings_path).top_k == 12
    controller.set_sort_order("name")
    controller.set_thumb_size(200)
    controller.shutdown()
    saved = Settings.load(library.dirs.settings_path)
    assert (saved.sort_order, saved.thumbnail_size, saved.top_k) == ("name", 200, 12)


def test_pause_is_reported_and_shutdown_is_idempotent(
    controller: SearchController, qtbot: QtBot
) -> None:
    import gc

    assert not gc.isenabled()  # collected on the GUI thread only while it runs
    with qtbot.waitSignal(controller.paused_changed) as got:
        controller.toggle_pause()
    assert got.args == [True] and controller.worker.paused
    with qtbot.waitSignal(controller.paused_changed) as got:
        controller.toggle_pause()
    assert got.args == [False]
    controller.shutdown()
    assert controller.stopped and not controller.worker._thread.isRunning()
    assert gc.isenabled()
    controller.shutdown()
