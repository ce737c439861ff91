"""The desktop window, offscreen, with real photos: with the fast encoder, and with the
offline model in the slow tier."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtTest import QAbstractItemModelTester

from desktop_app.engine.library import Library
from desktop_app.engine.settings import Settings
from desktop_app.ui.main_window import (
    PAGE_EMPTY_LIBRARY,
    PAGE_NO_QUERY,
    PAGE_RESULTS,
    MainWindow,
)

from .conftest import files_indexed, run_index

TIMEOUT = 240_000  # generous: a loaded CI machine may be slow; a pass is usually seconds


@pytest.fixture
def settings(app_home: Path, model: str) -> Settings:
    s = Settings(model=model)
    s.save(app_home / "config" / "settings.json")
    return s


def wait_results(qtbot, window: MainWindow, before: int | None = None) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        pass


def test_first_run_guides_to_add_a_folder(window: MainWindow) -> None:
    assert window.stack.currentIndex() == PAGE_EMPTY_LIBRARY
    assert window.status_bar.files_label.text() == "No images yet"
    # the offline encoder has no text tower and says why
    assert not window.side.text_box.isEnabled()
    assert "CLIP" in window.side.text_box.placeholderText()


def test_adding_a_folder_indexes_it_and_updates_status(window: MainWindow, indexed: Path) -> None:
    assert window.status_bar.files_label.text() == "40 images indexed"
    assert window.folders.folders() == [str(indexed)]
    assert window.stack.currentIndex() == PAGE_NO_QUERY


def test_dropping_an_image_file_fills_grid_best_match_first(
    window: MainWindow, indexed: Path, qtbot
) -> None:  # type: ignore[no-untyped-def]
    query = sorted(indexed.glob("*.jpg"))[3]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(query))])
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        assert window.drop_zone.handle_mime(mime)
    assert window.stack.currentIndex() == PAGE_RESULTS
    assert window.model.rowCount() == 40
    top = window.model.result(0)
    assert top.path == str(query) and top.score > 0.99
    # the query image is shown in the drop zone
    qtbot.waitUntil(lambda: window.drop_zone.image() is not None, timeout=TIMEOUT)


def test_dropped_image_data_from_a_browser(window: MainWindow, indexed: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtGui import QImage

    query = sorted(indexed.glob("*.jpg"))[5]
    mime = QMimeData()
    mime.setImageData(QImage(str(query)))
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        assert window.drop_zone.handle_mime(mime)
    assert window.model.result(0).path == str(query)


def test_find_similar_from_context_menu_replaces_results_and_history(
    window: MainWindow, indexed: Path, qtbot
) -> None:  # type: ignore[no-untyped-def]
    files = sorted(indexed.glob("*.jpg"))
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.search_file(files[0])
    first_results = [r.path for r in window.model.results()]
    target_row = 7
    target = window.model.result(target_row)
    menu = window.view.build_menu(target_row)
    labels = [a.text() for a in menu.actions() if a.text()]
    assert labels == [
        "Find similar",
        "Preview",
        "Open",
        "Show in folder",
        "Copy path",
        "Copy image",
    ]
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        menu.actions()[0].trigger()
    assert window.model.result(0).path == target.path
    assert [r.path for r in window.model.results()] != first_results
    assert window.current is not None and window.current.kind == "similar"
    # back returns to the first query
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.toolbar.back_action.trigger()
    assert window.model.result(0).path == str(files[0])
    assert window.toolbar.forward_action.isEnabled()


def test_copy_path_and_drag_out(window: MainWindow, indexed: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QApplication

    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.search_file(sorted(indexed.glob("*.jpg"))[0])
    menu = window.view.build_menu(0)
    next(a for a in menu.actions() if a.text() == "Copy path").trigger()
    assert QApplication.clipboard().text() == window.model.result(0).path
    mime = window.model.mimeData([window.model.index(0), window.model.index(1)])
    assert [u.toLocalFile() for u in mime.urls()] == [
        window.model.result(0).path,
        window.model.result(1).path,
    ]


def test_threshold_filters_results(window: MainWindow, indexed: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.search_file(sorted(indexed.glob("*.jpg"))[0])
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.toolbar.threshold_slider.setValue(99)
    assert window.model.rowCount() == 1


def test_watched_folder_picks_up_new_and_deleted_images(
    window: MainWindow, indexed: Path, qtbot, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from .conftest import PHOTOS

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    newcomer = outside / "newcomer.jpg"
    from PIL import Image

    Image.open(PHOTOS[0]).rotate(90, expand=True).save(newcomer, quality=92)
    shutil.copy2(newcomer, indexed / "newcomer.jpg")
    qtbot.waitUntil(lambda: files_indexed(window) == 41, timeout=TIMEOUT)
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.search_file(newcomer)
    assert window.model.result(0).path == str(indexed / "newcomer.jpg")

    victim = sorted(indexed.glob("*.jpg"))[2]
    victim.unlink()
    qtbot.waitUntil(lambda: files_indexed(window) == 40, timeout=TIMEOUT)
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.search_file(sorted(indexed.glob("*.jpg"))[0])
    assert str(victim) not in {r.path for r in window.model.results()}


def test_removing_a_folder_takes_its_images_out(window: MainWindow, indexed: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    window.folders.confirm_removal = False
    window.folders.list.item(0).setSelected(True)
    window.folders.remove_button.click()
    qtbot.waitUntil(lambda: files_indexed(window) == 0, timeout=TIMEOUT)
    assert window.folders.folders() == []
    assert window.stack.currentIndex() == PAGE_EMPTY_LIBRARY


def test_model_passes_qabstractitemmodeltester(window: MainWindow, indexed: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    QAbstractItemModelTester(
        window.model, QAbstractItemModelTester.FailureReportingMode.Fatal, window
    )
    with qtbot.waitSignal(window.searcher.finished, timeout=TIMEOUT):
        window.search_file(sorted(indexed.glob("*.jpg"))[0])
    window.toolbar.sort_box.setCurrentText("name")
    names = [Path(r.path).name for r in window.model.results()]
    assert names == sorted(names, key=str.lower)
    # thumbnails arrive lazily and update their rows
    window.model.data(window.model.index(0), 0x0101 + 4)  # Role.Thumbnail request
    qtbot.waitUntil(
        lambda: window.model.data(window.model.index(0), 0x0101 + 4) is not None, timeout=TIMEOUT
    )


def test_quitting_during_indexing_is_clean_and_next_start_resumes(
    qtbot, settings: Settings, tmp_path: Path, app_home: Path
) -> None:  # type: ignore[no-untyped-def]
    from desktop_app.engine.paths import resolve_dirs

    from .conftest import PHOTOS

    big = tmp_path / "many"
    big.mkdir()
    for i in range(4):
        for p in PHOTOS:
            shutil.copy2(p, big / f"{i}-{p.name}")
            # distinct content per copy, so every file needs the encoder
            with open(big / f"{i}-{p.name}", "ab") as fh:
                fh.write(bytes([i]) * 16)
    lib = Library(resolve_dirs(), settings)
    win = MainWindow(lib)
    qtbot.addWidget(win)
    win.add_folder(str(big))
    win.show()
    qtbot.waitUntil(lambda: win.status_bar.progress.value() > 0, timeout=TIMEOUT)
    win.close()  # mid-index
    assert not win.worker._thread.isRunning()
    lib.close()

    with Library(resolve_dirs(), settings) as again:
        done_before = again.catalog.counts()["files"]
        assert 0 < done_before < 160
        # catalog and vector index agree: nothing half-written
        assert again.store.count(settings.model) == len(
            again.catalog.fingerprints_with_vectors(settings.model)
        )
        s = run_index(again)
        assert s.embedded == 160 - done_before and s.unchanged == done_before


@pytest.fixture
def mosaic_indexed(window: MainWindow, tmp_path: Path, qtbot) -> Path:  # type: ignore[no-untyped-def]
    from .test_regions import LARGE, mosaic

    folder = tmp_path / "mosaics"
    folder.mkdir()
    path = mosaic(LARGE[:4], folder / "mosaic.jpg")
    for p in LARGE[4:]:
        shutil.copy2(p, folder / p.name)
    window.add_folder(str(folder))
    qtbot.waitUntil(lambda: files_indexed(window) == 5, timeout=TIMEOUT)
    return path


def test_rubber_band_searches_by_region_and_grid_shows_partial_badge(
    window: MainWindow, mosaic_indexed: Path, qtbot
) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QRect

    from desktop_app.ui.delegate import PARTIAL_COLOUR

    window.resize(1200, 800)
    with qtbot.waitSignal(window.searcher.completed, timeout=TIMEOUT):
        window.search_file(mosaic_indexed)
    qtbot.waitUntil(lambda: window.drop_zone.image() is not None, timeout=TIMEOUT)
    dz = window.drop_zone
    shown = dz._image_rect()
    # drag a rectangle over the top-left quarter of the shown query image
    band = QRect(shown.left() + 2, shown.top() + 2, shown.width() // 2 - 4, shown.height() // 2 - 4)
    with qtbot.waitSignal(window.searcher.completed, timeout=TIMEOUT):
        dz.select_region(band)
    assert window.current is not None and window.current.region is not None
    x, y, w, h = window.current.region
    assert x < 20 and y < 20 and 360 < w <= 400 and 480 < h <= 533  # image pixels, not screen
    top = window.model.result(0)
    assert top.path == str(mosaic_indexed) and top.match == "partial"
    assert top.region is not None and top.region[0] < 60 and top.region[1] < 60
    # the grid paints the partial badge and the region outline in the partial colour
    qtbot.waitUntil(
        lambda: window.model.data(window.model.index(0), 0x0101 + 4) is not None, timeout=TIMEOUT
    )
    image = window.view.viewport().grab().toImage()
    cell = window.view.visualRect(window.model.index(0))
    orange = sum(
        1
        for px in range(cell.left(), cell.right(), 2)
        for py in range(cell.top(), cell.bottom(), 2)
        if abs(image.pixelColor(px, py).red() - PARTIAL_COLOUR.red()) < 30
        and abs(image.pixelColor(px, py).green() - PARTIAL_COLOUR.green()) < 30
        and image.pixelColor(px, py).blue() < 60
    )
    assert orange > 30


def test_preview_highlights_the_region(window: MainWindow, mosaic_indexed: Path, qtbot) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(window.searcher.completed, timeout=TIMEOUT):
        window.search_file(mosaic_indexed)
    with qtbot.waitSignal(window.searcher.completed, timeout=TIMEOUT):
        window.drop_zone.region_selected.emit((400, 533, 400, 533))
    top = window.model.result(0)
    assert top.match == "partial"
    dialog = window.preview(top)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.image.pixmap is not None, timeout=TIMEOUT)
    box = dialog.image.region_rect()
    shown = dialog.image.shown_rect()
    assert box is not None
    # the bottom-right quarter of the mosaic is outlined
    assert abs(box.left() - (shown.left() + shown.width() / 2)) < shown.width() * 0.1
    assert abs(box.top() - (shown.top() + shown.height() / 2)) < shown.height() * 0.1
    dialog.close()
