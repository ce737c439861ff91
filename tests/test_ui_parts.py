"""The window's parts on their own: the geometry helpers, the tool bar, the status bar,
the side panel and background calls, each without a window or a library."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QRect, QSize, QThreadPool
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.engine.errors import ImageLoadError
from desktop_app.engine.indexer import Phase, Progress
from desktop_app.engine.settings import MAX_THUMBNAIL_SIZE, MIN_THUMBNAIL_SIZE, Settings
from desktop_app.engine.status import LibraryStatus
from desktop_app.ui.geometry import drawn_to_region, fit_rect, region_to_drawn
from desktop_app.ui.images import load_qimage
from desktop_app.ui.side_panel import SidePanel
from desktop_app.ui.statusbar import IndexStatusBar
from desktop_app.ui.tasks import BackgroundCalls
from desktop_app.ui.toolbar import SearchToolBar

from .conftest import PHOTOS

# -- geometry -----------------------------------------------------------------------------


def test_fit_rect_keeps_the_aspect_ratio_and_centres() -> None:
    wide = fit_rect(QSize(400, 200), QRect(10, 20, 100, 100))
    assert wide == QRect(10, 45, 100, 50)
    tall = fit_rect(QSize(100, 300), QRect(0, 0, 90, 60))
    assert tall == QRect(35, 0, 20, 60)


def test_region_maps_onto_the_drawn_image_and_back() -> None:
    drawn = QRect(6, 6, 200, 150)  # a 800x600 image drawn at a quarter of its size
    box = region_to_drawn((400, 300, 200, 100), (800, 600), drawn)
    assert box is not None
    assert (box.left(), box.top(), box.width(), box.height()) == (106, 81, 50, 25)
    assert drawn_to_region(box.toRect(), (800, 600), drawn) == (400, 300, 200, 100)
    assert region_to_drawn((0, 0, 10, 10), (0, 0), drawn) is None  # size unknown


def test_a_rectangle_off_or_too_small_on_the_image_is_no_region() -> None:
    drawn = QRect(0, 0, 100, 100)
    assert drawn_to_region(QRect(200, 200, 50, 50), (1000, 1000), drawn) is None
    assert drawn_to_region(QRect(0, 0, 2, 2), (1000, 1000), drawn) is None
    assert drawn_to_region(QRect(0, 0, 5, 5), (100, 100), drawn, min_side=12) is None
    # the part over the image counts, clipped to it
    assert drawn_to_region(QRect(-20, -20, 70, 70), (1000, 1000), drawn) == (0, 0, 500, 500)


def test_load_qimage_gives_a_reduced_image_and_the_full_size() -> None:
    got = load_qimage(PHOTOS[0], max_side=64)
    assert max(got.image.width(), got.image.height()) <= 64
    assert max(got.full_size) > 64
    with pytest.raises(ImageLoadError):
        load_qimage(b"not an image")


def test_thumbnail_size_limits_are_one_pair() -> None:
    s = Settings(thumbnail_size=1000)
    s.validate()
    assert s.thumbnail_size == MAX_THUMBNAIL_SIZE
    s.thumbnail_size = 1
    s.validate()
    assert s.thumbnail_size == MIN_THUMBNAIL_SIZE


# -- the tool bar -------------------------------------------------------------------------


def test_toolbar_reports_limits_and_shows_values_silently(qtbot: QtBot) -> None:
    tb = SearchToolBar()
    qtbot.addWidget(tb)
    changes: list[tuple[int, float]] = []
    tb.limits_changed.connect(lambda k, t: changes.append((k, t)))
    tb.set_values(20, 0.3, "name", 200)
    assert changes == []  # shown, not announced as the user's change
    assert tb.threshold_label.text() == "0.30" and tb.sort_box.currentText() == "name"
    tb.threshold_slider.setValue(42)
    tb.count_box.setValue(7)
    assert changes == [(20, 0.42), (7, 0.42)]
    assert tb.threshold_label.text() == "0.42"
    assert (tb.zoom_slider.minimum(), tb.zoom_slider.maximum()) == (
        MIN_THUMBNAIL_SIZE,
        MAX_THUMBNAIL_SIZE,
    )
    assert not tb.back_action.isEnabled() and not tb.forward_action.isEnabled()
    tb.set_history(True, False)
    assert tb.back_action.isEnabled() and not tb.forward_action.isEnabled()


# -- the status bar -----------------------------------------------------------------------


def status(files: int, failed: int) -> LibraryStatus:
    return LibraryStatus(
        files,
        files,
        failed,
        "histogram",
        "histogram on CPU",
        "cpu",
        None,
        {},
        "/d",
        0,
        (),
        (),
        "ok",
        None,
    )


def test_status_bar_shows_counts_progress_and_pause(qtbot: QtBot) -> None:
    sb = IndexStatusBar()
    qtbot.addWidget(sb)
    sb.show()
    sb.show_status(status(files=1234, failed=0))
    assert sb.files_label.text() == "1,234 images indexed"
    assert not sb.failures_button.isVisible()
    sb.show_status(status(files=0, failed=3))
    assert sb.files_label.text() == "No images yet"
    assert sb.failures_button.isVisible() and sb.failures_button.text() == "3 failed — show"
    sb.set_busy(True)
    assert sb.progress.isVisible() and sb.pause_button.isVisible()
    sb.show_progress(Progress(Phase.INDEXING, 3, 10, "/x/cat.jpg", embedded=3, reused=0, failed=0))
    assert (sb.progress.value(), sb.progress.maximum()) == (3, 10)
    assert sb.currentMessage() == "Indexing cat.jpg"
    sb.set_paused(True)
    assert sb.pause_button.text() == "Resume"
    with qtbot.waitSignal(sb.pause_clicked):
        sb.pause_button.click()
    sb.set_busy(False)
    assert not sb.progress.isVisible() and sb.pause_button.text() == "Pause"
    sb.set_queue_length(2)
    assert sb.queue_label.text() == "2 queued"


# -- the side panel -----------------------------------------------------------------------


def test_side_panel_text_search_and_paste(qtbot: QtBot) -> None:
    panel = SidePanel()
    qtbot.addWidget(panel)
    assert not panel.text_box.isEnabled()
    panel.set_text_search(False, "histogram")
    assert "CLIP" in panel.text_box.placeholderText()
    assert "histogram has no text tower" in panel.text_box.toolTip()
    panel.set_text_search(True, "ViT-B-32")
    assert panel.text_box.isEnabled() and panel.text_button.isEnabled()
    panel.text_box.setText("a red dress")
    with qtbot.waitSignal(panel.text_search) as got:
        panel.text_button.click()
    assert got.args == ["a red dress"]
    # pasting text that is no image says so instead of searching
    mime = QMimeData()
    mime.setText("hello")
    QApplication.clipboard().setMimeData(mime)
    with qtbot.waitSignal(panel.drop_zone.rejected) as got:
        panel.paste()
    assert got.args == ["The clipboard holds no image"]
    # The clipboard owns the QMimeData now; left there, Qt and Python both free it at
    # exit and the test process ends in a segmentation fault after every test passed.
    QApplication.clipboard().clear()


def test_side_panel_pastes_an_image_file(qtbot: QtBot) -> None:
    panel = SidePanel()
    qtbot.addWidget(panel)
    mime = QMimeData()
    mime.setText(str(PHOTOS[0]))
    QApplication.clipboard().setMimeData(mime)
    with qtbot.waitSignal(panel.drop_zone.images_dropped) as got:
        panel.paste()
    assert got.args == [[Path(PHOTOS[0])]]
    QApplication.clipboard().clear()  # as above


# -- background calls ---------------------------------------------------------------------


def test_a_failing_background_call_is_logged_with_its_traceback(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    pool = QThreadPool()
    calls = BackgroundCalls(pool)
    errors: list[str] = []

    def broken() -> int:
        raise KeyError("lost")

    with caplog.at_level(logging.WARNING, logger="desktop_app.ui.tasks"):
        calls.call(broken, lambda _r: None, errors.append)
        qtbot.waitUntil(lambda: bool(errors))
        pool.waitForDone()
    assert errors == ["KeyError: 'lost'"]
    record = next(r for r in caplog.records if r.name == "desktop_app.ui.tasks")
    assert record.levelno == logging.ERROR and record.exc_info is not None
    # an expected error (an unreadable image) is a warning, still with its traceback
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="desktop_app.ui.tasks"):
        calls.call(lambda: load_qimage(b"junk"), lambda _r: None, errors.append)
        qtbot.waitUntil(lambda: len(errors) == 2)
        pool.waitForDone()
    record = next(r for r in caplog.records if r.name == "desktop_app.ui.tasks")
    assert record.levelno == logging.WARNING and record.exc_info is not None


# -- the preview --------------------------------------------------------------------------


def test_a_preview_closed_before_its_image_arrives_is_quietly_dropped(qtbot: QtBot) -> None:
    import threading

    from PySide6.QtCore import Qt

    from desktop_app.engine.search import SearchResult
    from desktop_app.ui.preview import PreviewDialog

    pool = QThreadPool()
    pool.setMaxThreadCount(1)
    calls = BackgroundCalls(pool)
    gate = threading.Event()
    calls.call(lambda: gate.wait(30), lambda _r: None)  # holds the pool: the load waits
    dialog = PreviewDialog(SearchResult(str(PHOTOS[0]), 0.9), calls)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    delivered: list[object] = []
    calls.call(lambda: 1, delivered.append)  # runs after the preview's load
    dialog.show()
    with qtbot.waitSignal(dialog.destroyed):
        dialog.close()  # Space pressed at once: the dialog goes before its image comes
    gate.set()
    pool.waitForDone()
    # the image is delivered to a deleted widget: dropped, no error reaches Qt's loop
    qtbot.waitUntil(lambda: bool(delivered))
