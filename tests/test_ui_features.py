"""The window's newer features with the fast histogram encoder: result filters, the
duplicate review (keep / trash / not duplicates), and the polish found trying the window
as a new user (preview arrows, region clearing, sort direction, badges, failures dialog,
copy confirmations, remembered open folder, fitting labels, history, folder messages)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from desktop_app.engine.catalog import FileRow
from desktop_app.engine.filters import ResultFilter
from desktop_app.engine.library import Library
from desktop_app.engine.paths import resolve_dirs
from desktop_app.engine.search import SearchResult
from desktop_app.engine.settings import HISTOGRAM_MODEL, Settings
from desktop_app.ui.delegate import badge_labels
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.preview import PreviewDialog
from desktop_app.ui.results_model import Role

from .conftest import files_indexed  # conftest's `indexed` fixture indexes into `window`

TIMEOUT = 120_000  # generous for a loaded machine; a pass takes seconds


@pytest.fixture
def window(qtbot: QtBot, app_home: Path) -> Iterator[MainWindow]:
    settings = Settings(model=HISTOGRAM_MODEL)
    settings.save(app_home / "config" / "settings.json")
    lib = Library(resolve_dirs(), settings)
    win = MainWindow(lib, watch=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(
        lambda: win.status_bar.encoder_label.text().startswith(HISTOGRAM_MODEL), timeout=TIMEOUT
    )
    yield win
    win.shutdown()
    lib.close()


def failures(win: MainWindow) -> list[Any]:
    return list(win.last_status.failures) if win.last_status else []


def search(qtbot: QtBot, win: MainWindow, start: object) -> None:
    with qtbot.waitSignal(win.searcher.completed, timeout=TIMEOUT):
        start()  # type: ignore[operator]


def shown(win: MainWindow) -> list[SearchResult]:
    return win.model.results()


# -- filters ---------------------------------------------------------------------------


def _row(path: str, **kw: object) -> FileRow:
    base: dict[str, object] = dict(
        path=path,
        root="/lib",
        size=1,
        mtime_ns=0,
        fingerprint="f",
        width=800,
        height=600,
        status="ok",
        error=None,
    )
    base.update(kw)
    return FileRow(**base)  # type: ignore[arg-type]


def test_result_filter_keeps_rows_by_folder_type_size_date_and_exclusion() -> None:
    noon = datetime(2024, 5, 10, 12).timestamp() * 1e9
    row = _row("/lib/a/photo.JPG", mtime_ns=int(noon))
    assert ResultFilter().keeps_row(row) and not ResultFilter().active
    assert ResultFilter(folders=("/lib",)).keeps_row(row)
    assert not ResultFilter(folders=("/other",)).keeps_row(row)
    assert ResultFilter(file_types=("jpg",)).keeps_row(row)
    assert not ResultFilter(file_types=("png",)).keeps_row(row)
    assert ResultFilter(min_width=800, min_height=600).keeps_row(row)
    assert not ResultFilter(min_width=801).keeps_row(row)
    assert ResultFilter(date_from=date(2024, 5, 10), date_to=date(2024, 5, 10)).keeps_row(row)
    assert not ResultFilter(date_from=date(2024, 5, 11)).keeps_row(row)
    assert not ResultFilter(exclude_paths=frozenset({row.path})).keeps_row(row)
    # only the match kind: the store is not over-fetched for it
    assert ResultFilter(match="partial").fetch_count(10) == 10
    assert ResultFilter(min_width=1).fetch_count(10) > 10
    with pytest.raises(ValueError, match="ends before"):
        ResultFilter(date_from=date(2024, 2, 1), date_to=date(2024, 1, 1))


def test_filter_bar_narrows_results_in_the_engine(
    window: MainWindow, indexed: Path, qtbot: QtBot
) -> None:
    query = sorted(indexed.glob("*.jpg"))[0]
    search(qtbot, window, lambda: window.search_file(query))
    everything = shown(window)
    widths = sorted(r.width or 0 for r in everything)
    cut = widths[len(widths) // 2]
    bar = window.features.filter_bar
    search(qtbot, window, lambda: bar.min_width.setValue(cut))
    got = shown(window)
    assert got and len(got) < len(everything)
    assert all((r.width or 0) >= cut for r in got)
    assert window.controller.current is not None
    assert window.controller.current.result_filter.min_width == cut
    # a folder that is not the library's: nothing; clearing brings everything back
    search(qtbot, window, lambda: bar.type_box.setCurrentIndex(bar.type_box.findData("png")))
    assert shown(window) == []
    search(qtbot, window, bar.clear)
    assert len(shown(window)) == len(everything)
    # the folder list follows the library
    assert bar.folder_box.findData(str(indexed.resolve())) > 0


def test_contradictory_dates_are_said_and_not_applied(window: MainWindow) -> None:
    bar = window.features.filter_bar
    bar.date_from.setDate(bar.date_from.date().currentDate())
    bar.date_to.setDate(bar.date_from.date().addDays(-3))
    assert "ends before" in bar.error.text()
    assert window.controller.result_filter.date_to is None


def test_query_file_can_be_hidden_and_sort_reversed(
    window: MainWindow, indexed: Path, qtbot: QtBot
) -> None:
    query = sorted(indexed.glob("*.jpg"))[5]
    search(qtbot, window, lambda: window.search_file(query))
    assert shown(window)[0].path == str(query)
    search(qtbot, window, lambda: window.toolbar.hide_query_box.setChecked(True))
    assert str(query) not in [r.path for r in shown(window)]
    scores = [r.score for r in shown(window)]
    assert scores == sorted(scores, reverse=True)
    assert window.toolbar.reverse_button.text() == "↓ Descending"
    window.toolbar.reverse_button.click()
    scores = [r.score for r in shown(window)]
    assert scores == sorted(scores)
    assert window.toolbar.reverse_button.text() == "↑ Ascending"


# -- badges ------------------------------------------------------------------------------


def test_verified_partial_and_similar_region_have_different_badges() -> None:
    assert [t for t, _ in badge_labels("partial", False, True)] == ["verified partial"]
    assert [t for t, _ in badge_labels("partial", False, False)] == ["similar region"]
    assert [t for t, _ in badge_labels("full", True, False)] == ["full", "offline"]


def test_the_model_reports_whether_a_partial_match_was_confirmed(window: MainWindow) -> None:
    weak = SearchResult("/x/a.jpg", 0.7, "partial", (0, 0, 5, 5))
    strong = SearchResult("/x/b.jpg", 0.9, "partial", (0, 0, 5, 5), confirmed=True)
    window.model.set_results([weak, strong])
    by_path = {
        window.model.result(i).path: window.model.index(i).data(Role.Confirmed) for i in range(2)
    }
    assert by_path == {"/x/a.jpg": False, "/x/b.jpg": True}
    tip = window.model.index(0).data(Qt.ItemDataRole.ToolTipRole)
    assert "verified partial" in tip


# -- preview -----------------------------------------------------------------------------


def _key(widget: object, key: Qt.Key) -> None:
    event = QKeyEvent(QKeyEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier)
    widget.keyPressEvent(event)  # type: ignore[attr-defined]


def test_preview_steps_with_arrow_keys_and_esc_closes(
    window: MainWindow, indexed: Path, qtbot: QtBot
) -> None:
    search(qtbot, window, lambda: window.search_file(sorted(indexed.glob("*.jpg"))[0]))
    results = shown(window)
    dialog: PreviewDialog = window.preview(results[1])
    assert dialog.search_result == results[1]
    _key(dialog, Qt.Key.Key_Right)
    assert dialog.search_result == results[2]
    assert "3 of" in dialog.windowTitle()
    _key(dialog, Qt.Key.Key_Left)
    _key(dialog, Qt.Key.Key_Left)
    _key(dialog, Qt.Key.Key_Left)  # stops at the first
    assert dialog.search_result == results[0]
    qtbot.waitUntil(lambda: dialog.image.pixmap is not None, timeout=TIMEOUT)
    with qtbot.waitSignal(dialog.rejected):
        _key(dialog, Qt.Key.Key_Escape)


# -- the query panel ---------------------------------------------------------------------


def test_region_can_be_cleared_with_esc_or_the_button_and_is_hinted(
    window: MainWindow, indexed: Path, qtbot: QtBot
) -> None:
    dz = window.drop_zone
    query = sorted(indexed.glob("*.jpg"))[2]
    with qtbot.waitSignal(window.controller.query_image, timeout=TIMEOUT):
        search(qtbot, window, lambda: window.search_file(query))
    assert "Drag a rectangle" in dz.hint_text()
    assert not dz.clear_button.isVisible()
    shown_rect = dz._image_rect()
    search(qtbot, window, lambda: dz.select_region(shown_rect.adjusted(10, 10, -40, -40)))
    assert window.current is not None and window.current.region is not None
    assert dz.clear_button.isVisible() and "Esc" in dz.hint_text()
    search(qtbot, window, lambda: _key(dz, Qt.Key.Key_Escape))
    assert window.current is not None and window.current.region is None
    assert dz.region() is None and not dz.clear_button.isVisible()
    search(qtbot, window, lambda: dz.select_region(shown_rect.adjusted(10, 10, -40, -40)))
    search(qtbot, window, dz.clear_button.click)
    assert window.current is not None and window.current.region is None


def test_drop_zone_highlights_while_a_drag_hovers(window: MainWindow, photos: Path) -> None:
    dz = window.drop_zone
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sorted(photos.glob("*.jpg"))[0]))])
    assert dz.drag_entered(mime)
    assert dz.hovering
    dz.set_hovering(False)  # what leaving or dropping does
    assert not dz.hovering
    assert not dz.drag_entered(QMimeData())  # nothing droppable: no highlight
    assert not dz.hovering


def test_long_file_names_elide_without_widening_the_panel(window: MainWindow) -> None:
    label = window.side.query_label
    before = window.side.minimumSizeHint().width()
    name = "a" * 400 + ".jpg"
    label.setText(f"{name}: could not read the image because it is not an image at all")
    assert window.side.minimumSizeHint().width() <= before
    assert "…" in label.text() and label.full_text().startswith(name)
    assert label.wordWrap()


def test_rejected_query_does_not_enter_the_history(
    window: MainWindow, indexed: Path, qtbot: QtBot, tmp_path: Path
) -> None:
    good = sorted(indexed.glob("*.jpg"))[0]
    search(qtbot, window, lambda: window.search_file(good))
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    with qtbot.waitSignal(window.searcher.failed, timeout=TIMEOUT):
        window.search_file(bad)
    assert not window.controller.history.can_back()
    assert window.controller.history.current() is not None
    assert window.controller.history.current().path == str(good)  # type: ignore[union-attr]


def test_open_dialog_remembers_the_last_folder(
    window: MainWindow, photos: Path, monkeypatch: pytest.MonkeyPatch, qtbot: QtBot
) -> None:
    starts: list[str] = []
    chosen = str(sorted(photos.glob("*.jpg"))[0])

    def fake(_parent: object, _title: str, start: str, _types: str) -> tuple[str, str]:
        starts.append(start)
        return chosen, ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", fake)
    window.open_image_dialog()
    window.open_image_dialog()
    assert starts == ["", str(photos)]
    window.controller.pool.waitForDone(TIMEOUT)  # the searches it started


# -- folders -------------------------------------------------------------------------------


def test_empty_folder_and_folder_inside_a_watched_one_say_so(
    window: MainWindow, indexed: Path, tmp_path: Path, qtbot: QtBot
) -> None:
    messages: list[str] = []
    window.controller.message.connect(lambda text, _ms: messages.append(text))
    empty = tmp_path / "empty"
    empty.mkdir()
    window.add_folder(str(empty))
    qtbot.waitUntil(lambda: any("has no images" in m for m in messages), timeout=TIMEOUT)
    inner = indexed / "inner"
    inner.mkdir()
    shutil.copy2(sorted(indexed.glob("*.jpg"))[0], inner / "x.jpg")
    window.add_folder(str(inner))
    assert any("inside the watched folder" in m for m in messages)
    assert str(inner.resolve()) not in [r["path"] for r in window.controller.roots]
    qtbot.waitUntil(lambda: files_indexed(window) == 41, timeout=TIMEOUT)


# -- failures, copies ---------------------------------------------------------------------


def test_failures_dialog_retries_ignores_and_reveals(
    window: MainWindow, photos: Path, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = sorted(photos.glob("*.jpg"))[0]
    broken = photos / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    other = photos / "other.jpg"
    other.write_bytes(b"nor this")
    window.add_folder(str(photos))
    qtbot.waitUntil(lambda: len(failures(window)) == 2, timeout=TIMEOUT)
    revealed: list[str] = []
    dialog = window.show_failures()
    monkeypatch.setattr(dialog.files, "show_in_folder", revealed.append)
    assert sorted(dialog.paths()) == sorted([str(broken), str(other)])
    assert not dialog.retry_button.isEnabled()  # nothing selected yet
    row = dialog.paths().index(str(broken))
    dialog.table.selectRow(row)
    dialog.reveal_selected()
    assert revealed == [str(broken)]
    dialog.ignore_selected()
    assert dialog.paths() == [str(other)]
    assert [f.path for f in window.controller.failures()] == [str(other)]
    # the other is fixed on disk, then retried: it leaves the failures
    shutil.copy2(good, other)
    dialog.table.selectRow(0)
    with qtbot.waitSignal(window.controller.worker.finished, timeout=TIMEOUT):
        dialog.retry_selected()
    assert dialog.paths() == []
    qtbot.waitUntil(
        lambda: str(other) not in [f.path for f in failures(window)],
        timeout=TIMEOUT,
    )
    dialog.close()


def test_copy_path_and_copy_image_confirm_in_the_status_bar(
    window: MainWindow, photos: Path, qtbot: QtBot
) -> None:
    photo = str(sorted(photos.glob("*.jpg"))[0])
    window.view.copy_path_requested.emit(photo)
    assert "Copied the path" in window.status_bar.currentMessage()
    with qtbot.waitSignal(window.controller.message, timeout=TIMEOUT) as got:
        window.view.copy_image_requested.emit(photo)
    assert got.args[0].startswith("Copied the image")


# -- duplicates ----------------------------------------------------------------------------


@pytest.fixture
def with_duplicates(window: MainWindow, photos: Path, qtbot: QtBot) -> dict[str, Path]:
    """The photos plus an exact copy and a resized, re-compressed copy of one of them."""
    original = sorted(photos.glob("*.jpg"))[7]
    copies = photos / "copies"
    copies.mkdir()
    exact = copies / original.name
    shutil.copy2(original, exact)
    small = copies / "small.jpg"
    with Image.open(original) as im:
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(small, quality=60)
    window.add_folder(str(photos))
    qtbot.waitUntil(lambda: files_indexed(window) == 42, timeout=TIMEOUT)
    return {"original": original, "exact": exact, "small": small}


def _review(window: MainWindow, qtbot: QtBot, preset: str, trash_dir: Path) -> object:
    def trash(path: str) -> None:  # stands in for send2trash: a move, never a delete
        shutil.move(path, trash_dir / Path(path).name)

    trash_dir.mkdir(exist_ok=True)
    window.features.trash = trash
    dialog = window.features.open_duplicates()
    dialog.preset.setCurrentText(preset)
    with qtbot.waitSignal(dialog.finder_calls._relay.done, timeout=TIMEOUT):
        dialog.find_button.click()
    return dialog


def test_duplicate_review_keeps_the_largest_and_trashes_the_rest(
    window: MainWindow, with_duplicates: dict[str, Path], qtbot: QtBot, tmp_path: Path
) -> None:
    trash_dir = tmp_path / "trash"
    dialog = _review(window, qtbot, "near", trash_dir)
    small = str(with_duplicates["small"])
    row = next(i for i, g in enumerate(dialog.groups) if small in g.paths)
    dialog.group_list.setCurrentRow(row)
    group = dialog.groups[row]
    # side by side: one card per file with its size, dimensions and date
    assert [c.file.path for c in dialog.cards] == group.paths
    assert all(" px" in c.facts.text() for c in dialog.cards)
    qtbot.waitUntil(
        lambda: all(
            c.thumb.pixmap() is not None and not c.thumb.pixmap().isNull() for c in dialog.cards
        ),
        timeout=TIMEOUT,
    )
    kept = dialog.kept()
    assert len(kept) == 1 and kept[0] != small  # the largest is a full-size one
    dialog.apply_rule("newest")
    assert len(dialog.kept()) == 1
    dialog.apply_rule("largest")
    with qtbot.waitSignal(window.controller.worker.finished, timeout=TIMEOUT):
        dialog.trash_button.click()
    assert Path(kept[0]).exists()
    for path in group.paths:
        if path != kept[0]:
            assert not Path(path).exists() and (trash_dir / Path(path).name).exists()
    # the index followed: the trashed files are gone from the catalog
    catalog = window.controller.library.catalog
    assert catalog.file(small) is None and catalog.file(kept[0]) is not None
    assert small not in [p for g in dialog.groups for p in g.paths]
    dialog.close()


def test_nothing_is_trashed_without_a_kept_file(
    window: MainWindow, with_duplicates: dict[str, Path], qtbot: QtBot, tmp_path: Path
) -> None:
    dialog = _review(window, qtbot, "exact", tmp_path / "trash")
    assert dialog.groups
    for card in dialog.cards:
        card.keep.setChecked(False)
    dialog.trash_button.click()
    assert "Tick at least one" in dialog.status.text()
    assert all(Path(p).exists() for g in dialog.groups for p in g.paths)
    dialog.close()


def test_not_duplicates_is_remembered(
    window: MainWindow, with_duplicates: dict[str, Path], qtbot: QtBot, tmp_path: Path
) -> None:
    dialog = _review(window, qtbot, "near", tmp_path / "trash")
    small = str(with_duplicates["small"])
    row = next(i for i, g in enumerate(dialog.groups) if small in g.paths)
    dialog.group_list.setCurrentRow(row)
    before = len(dialog.groups)
    # a catalog write: the indexing worker does it and answers
    with qtbot.waitSignal(window.controller.not_duplicates_marked, timeout=TIMEOUT):
        dialog.not_dup_button.click()
    assert len(dialog.groups) == before - 1
    with qtbot.waitSignal(dialog.finder_calls._relay.done, timeout=TIMEOUT):
        dialog.find_button.click()
    assert not any(small in g.paths for g in dialog.groups)
    assert all(Path(p).exists() for p in with_duplicates.values())
    dialog.close()


# -- model management ----------------------------------------------------------------------


def test_settings_show_the_encoder_running_and_why(window: MainWindow) -> None:
    from desktop_app.ui.dialogs import SettingsDialog, describe_running

    c = window.controller
    assert c.running_encoder.startswith(HISTOGRAM_MODEL) and c.encoder_warning == ""
    dialog = SettingsDialog(c.settings, window, c.running_encoder, c.encoder_warning)
    assert dialog.running.text() == c.running_encoder
    dialog.close()
    why = "CLIP weights for ViT-B-32:laion2b_s34b_b79k are not on this machine"
    text = describe_running("ViT-B-32:laion2b_s34b_b79k", "efficientnet-lite0 (offline)", why)
    assert text.startswith("efficientnet-lite0 (offline), not ViT-B-32") and why in text


def test_download_progress_shows_size_and_can_be_cancelled(
    window: MainWindow, qtbot: QtBot
) -> None:
    """A fake progress source on another thread stands in for the Hugging Face download
    (none can happen here); cancelling makes the next chunk raise DownloadCancelled."""
    import threading

    from desktop_app.engine.encoders.clip_weights import cancellable
    from desktop_app.engine.errors import DownloadCancelled, EncoderUnavailable

    features = window.features
    report = window.controller.worker.download_progress
    assert report is not None
    total = 600 * 2**20
    outcome: list[str] = []
    go_on = threading.Event()

    def fake_download() -> None:
        try:
            for chunk in range(1, 100):
                report(chunk * 6 * 2**20, total, "open_clip_model.safetensors")
                if chunk == 10:
                    go_on.wait(30)  # the user looks at the dialog and cancels
            outcome.append("finished")
        except DownloadCancelled as exc:
            outcome.append(f"cancelled: {exc}")

    thread = threading.Thread(target=fake_download)
    thread.start()
    qtbot.waitUntil(lambda: features.download_dialog is not None, timeout=TIMEOUT)
    dialog = features.download_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: "60 of 600 MB" in dialog.labelText(), timeout=TIMEOUT)
    assert dialog.value() == 10
    from PySide6.QtWidgets import QPushButton

    button = dialog.findChild(QPushButton)
    assert button is not None and button.text() == "Cancel"
    button.click()
    go_on.set()
    thread.join(30)
    assert outcome and outcome[0].startswith("cancelled")
    assert issubclass(DownloadCancelled, EncoderUnavailable)  # so the fallback runs
    # the engine's own wrapper behaves the same for any callback
    stop = threading.Event()
    seen: list[int] = []
    wrapped = cancellable(lambda done, _t, _d: seen.append(done), stop)
    wrapped(1, 2, "x")
    stop.set()
    with pytest.raises(DownloadCancelled):
        wrapped(2, 2, "x")
    assert seen == [1]
    # the encoder came up (here: it already had): the dialog goes, the next download may run
    window.controller.encoder_ready.emit("efficientnet-lite0", False)
    assert features.download_dialog is None and not features.download.cancel.is_set()


# -- query clean-up --------------------------------------------------------------------------


def _captioned(photo: Path) -> Image.Image:
    from PIL import ImageDraw, ImageFont

    with Image.open(photo) as im:
        out = im.convert("RGB")
    out.thumbnail((800, 800))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(14, out.height // 10))
    draw.text(
        (10, 8), "SOLD OUT AGAIN", font=font, fill="white", stroke_width=3, stroke_fill="black"
    )
    return out


def test_cleanup_finds_overlaid_text_and_brightens_dark_photos(photos: Path) -> None:
    import numpy as np
    from PIL import ImageEnhance

    from desktop_app.engine.cleanup import Cleanup, clean_query, enhance, text_mask

    photo = sorted(photos.glob("*.jpg"))[0]
    captioned = _captioned(photo)
    mask = text_mask(captioned)
    top = mask[: captioned.height // 4]
    assert (top > 0).mean() > 0.05  # the caption's band
    assert (mask[captioned.height // 2 :] > 0).mean() < 0.01  # not the photo below it
    with Image.open(photo) as im:
        plain = im.convert("RGB")
    assert (text_mask(plain) > 0).mean() < 0.01
    cleaned = clean_query(captioned, Cleanup(remove_text=True))
    assert cleaned.size == captioned.size
    before = np.asarray(captioned, np.float32)
    after = np.asarray(cleaned, np.float32)
    assert np.abs(before - after)[mask == 0].max() == 0  # only the text area is painted
    dark = ImageEnhance.Brightness(plain).enhance(0.25)
    assert np.asarray(enhance(dark)).mean() > np.asarray(dark).mean() + 20
    assert clean_query(plain, Cleanup()) is plain


def test_cleanup_toggles_rerun_the_query_and_show_the_cleaned_image(
    window: MainWindow, indexed: Path, qtbot: QtBot, tmp_path: Path
) -> None:
    query = tmp_path / "meme.jpg"
    _captioned(sorted(indexed.glob("*.jpg"))[0]).save(query)
    with qtbot.waitSignal(window.controller.query_image, timeout=TIMEOUT) as plain:
        search(qtbot, window, lambda: window.search_file(query))
    assert window.current is not None and not window.current.cleanup.active
    with qtbot.waitSignal(window.controller.query_image, timeout=TIMEOUT) as cleaned:
        search(qtbot, window, lambda: window.side.remove_text.setChecked(True))
    assert window.current is not None and window.current.cleanup.remove_text
    assert "text removed" in window.side.query_label.full_text()
    assert cleaned.args[0] != plain.args[0]  # the panel shows the cleaned query
    assert not window.controller.history.can_back()  # a toggle is not a new query
