"""The duplicate review: find groups of duplicates, look at each group side by side
(thumbnail, size, dimensions, date, path), keep the best and move the others to the
system trash, or mark the group as not duplicates.

Threads: the dialog and its cards live on the GUI thread. The finder (read-only) runs in
the controller's finder pool (one thread of its own, so searches never wait behind it),
thumbnails in the image pool, both through ``BackgroundCalls``; its cancel event comes
from the controller, which sets it at quit (closing the main window never calls this
dialog's closeEvent) before draining that pool. Moving files to the trash (send2trash,
never a hard delete) runs in the finder pool too: it only touches the files; the
catalog and the index then follow through an index job of those paths on the indexing
worker, the one writer. "Not duplicates" is a catalog write, so it is a worker job too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.duplicate_review import (
    KEEP_RULES,
    TrashReport,
    move_to_trash,
)
from desktop_app.engine.duplicates import (
    PRESETS,
    DuplicateFile,
    DuplicateGroup,
    DuplicateReport,
    last_report,
)
from desktop_app.engine.filters import when_label
from desktop_app.engine.library import Library
from desktop_app.ui.images import LoadedQImage, load_qimage
from desktop_app.ui.tasks import BackgroundCalls
from desktop_app.ui.widgets import FittingLabel

log = logging.getLogger(__name__)

THUMB_SIDE = 200
Trash = Callable[[str], None]


class FileCard(QFrame):
    """One file of a group: thumbnail, facts, and whether it is kept."""

    def __init__(self, f: DuplicateFile, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.file = f
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFixedWidth(THUMB_SIDE + 24)
        self.thumb = QLabel("…")
        self.thumb.setFixedSize(THUMB_SIDE, THUMB_SIDE)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.keep = QCheckBox("Keep")
        self.facts = QLabel(describe_file(f))
        self.facts.setWordWrap(True)
        path = FittingLabel(f.path)
        path.setToolTip(f.path)
        path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v = QVBoxLayout(self)
        v.addWidget(self.thumb)
        v.addWidget(self.keep)
        v.addWidget(self.facts)
        v.addWidget(path)
        v.addStretch(1)

    def set_image(self, got: LoadedQImage) -> None:
        pixmap = QPixmap.fromImage(got.image).scaled(
            THUMB_SIDE,
            THUMB_SIDE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.thumb.setPixmap(pixmap)


class DuplicateReviewDialog(QDialog):
    def __init__(
        self,
        library: Library,
        finder_calls: BackgroundCalls,
        image_calls: BackgroundCalls,
        reindex: Callable[[list[str]], None],
        parent: QWidget | None = None,
        trash: Trash | None = None,
        *,
        mark: Callable[[DuplicateGroup], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """``mark`` submits "not duplicates" to the one writer (the window passes the
        controller's; its answer comes back to :meth:`marked`); ``cancel`` stops a
        running finder, set here on close and by the controller at quit."""
        super().__init__(parent)
        self.setWindowTitle("Find duplicates")
        self.resize(1100, 700)
        self.library = library
        self.finder_calls, self.image_calls = finder_calls, image_calls
        self.reindex = reindex
        self.trash = trash  # None: send2trash (tests pass a stand-in)
        self.cancel = cancel or threading.Event()
        self._mark = mark
        self.report: DuplicateReport | None = None
        self._pending_mark: DuplicateGroup | None = None  # sent to the worker, no answer yet
        self.groups: list[DuplicateGroup] = []
        self.cards: list[FileCard] = []
        self.busy = False
        self._build()

    def _build(self) -> None:
        self.preset = QComboBox()
        for p in PRESETS.values():
            self.preset.addItem(p.name, p.name)
            self.preset.setItemData(self.preset.count() - 1, p.help, Qt.ItemDataRole.ToolTipRole)
        self.preset.setCurrentText("near")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.01)
        self.threshold.setSpecialValueText("preset")
        self.threshold.setToolTip("Minimum similarity; 'preset' uses the preset's own")
        self.find_button = QPushButton("Find")
        self.status = QLabel("Choose a preset and press Find.")
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        for w in (QLabel("Preset"), self.preset, QLabel("Threshold"), self.threshold):
            top.addWidget(w)
        top.addWidget(self.find_button)
        top.addWidget(self.status, 1)
        self.group_list = QListWidget()
        self.cards_box = QWidget()
        self.cards_layout = QHBoxLayout(self.cards_box)
        self.cards_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.cards_box)
        split = QSplitter()
        split.addWidget(self.group_list)
        split.addWidget(scroll)
        split.setSizes([260, 840])
        self.keep_largest = QPushButton("Keep largest")
        self.keep_newest = QPushButton("Keep newest")
        self.trash_button = QPushButton("Move the others to the trash")
        self.not_dup_button = QPushButton("Not duplicates")
        bottom = QHBoxLayout()
        for b in (self.keep_largest, self.keep_newest):
            bottom.addWidget(b)
        bottom.addStretch(1)
        bottom.addWidget(self.not_dup_button)
        bottom.addWidget(self.trash_button)
        v = QVBoxLayout(self)
        v.addLayout(top)
        v.addWidget(split, 1)
        v.addLayout(bottom)
        self.find_button.clicked.connect(self.find_groups)
        self.group_list.currentRowChanged.connect(self._show_group)
        self.keep_largest.clicked.connect(lambda: self.apply_rule("largest"))
        self.keep_newest.clicked.connect(lambda: self.apply_rule("newest"))
        self.trash_button.clicked.connect(self.trash_unkept)
        self.not_dup_button.clicked.connect(self.mark_not_duplicates)
        self._enable()

    # -- finding ----------------------------------------------------------------------
    def find_groups(self) -> None:
        if self.busy:
            return
        preset = str(self.preset.currentData())
        threshold = self.threshold.value() or None
        self._set_busy(True, f"Looking for {preset} duplicates…")
        lib, cancel = self.library, self.cancel
        self.finder_calls.call(
            lambda: last_report(lib.duplicates(preset, threshold, cancel)),
            self._found,
            self._failed,
        )

    def _found(self, report: DuplicateReport) -> None:
        if not shiboken6.isValid(self.group_list):
            return
        self.report = report
        self.groups = list(report.groups)
        self.group_list.clear()
        for g in self.groups:
            self.group_list.addItem(QListWidgetItem(describe_group(g)))
        n = len(self.groups)
        self._set_busy(
            False,
            f"{n} group{'s' if n != 1 else ''} among {report.images} images"
            + (" (cancelled)" if report.cancelled else "")
            if n
            else f"No duplicates among {report.images} images.",
        )
        if n:
            self.group_list.setCurrentRow(0)
        else:
            self._show_group(-1)

    def _failed(self, message: str) -> None:
        if shiboken6.isValid(self.status):
            self._set_busy(False, message)

    # -- one group ----------------------------------------------------------------------
    def current_group(self) -> DuplicateGroup | None:
        row = self.group_list.currentRow()
        return self.groups[row] if 0 <= row < len(self.groups) else None

    def _show_group(self, row: int) -> None:
        for card in self.cards:
            card.setParent(None)
            card.deleteLater()
        self.cards = []
        group = self.current_group()
        if group is not None:
            for f in group.files:
                card = FileCard(f)
                self.cards_layout.insertWidget(self.cards_layout.count() - 1, card)
                self.cards.append(card)
                self._load_thumb(card)
            self.apply_rule("largest")
        self._enable()

    def _load_thumb(self, card: FileCard) -> None:
        path = card.file.path

        def shown(got: LoadedQImage) -> None:
            if shiboken6.isValid(card) and card in self.cards:
                card.set_image(got)

        def failed(message: str) -> None:
            if shiboken6.isValid(card) and card in self.cards:
                card.thumb.setText("cannot show")
                card.thumb.setToolTip(message)

        self.image_calls.call(lambda: load_qimage(path, max_side=THUMB_SIDE * 2), shown, failed)

    def apply_rule(self, rule: str) -> None:
        """Tick the file a keep rule picks, untick the rest."""
        group = self.current_group()
        if group is None:
            return
        best = KEEP_RULES[rule](group.files)
        for card in self.cards:
            card.keep.setChecked(card.file.path == best.path)

    def kept(self) -> list[str]:
        return [c.file.path for c in self.cards if c.keep.isChecked()]

    # -- decisions ----------------------------------------------------------------------
    def trash_unkept(self) -> None:
        """Move the group's unticked files to the system trash; the index follows."""
        group, keep = self.current_group(), self.kept()
        if group is None or self.busy:
            return
        if not keep:
            self.status.setText("Tick at least one file to keep; nothing was moved.")
            return
        trash = self.trash
        self._set_busy(True, "Moving to the trash…")
        self.finder_calls.call(
            lambda: move_to_trash(group, keep, trash),
            lambda got: self._trashed(group, got),
            self._failed,
        )

    def _trashed(self, group: DuplicateGroup, got: tuple[TrashReport, list[str]]) -> None:
        report, gone = got
        self.reindex(gone)  # the worker drops them from the catalog and the index
        if not shiboken6.isValid(self.status):
            return
        text = f"Moved {len(report.trashed)} file(s) to the trash."
        if report.failed:
            text += " Not moved: " + "; ".join(f"{Path(p).name}: {why}" for p, why in report.failed)
        self._set_busy(False, text)
        if not report.failed:
            self._drop_group(group)

    def mark_not_duplicates(self) -> None:
        """Remember the group as not duplicates: a catalog write, so it goes to the
        indexing worker (the one writer); :meth:`marked` hears back."""
        group = self.current_group()
        if group is None or self.busy or self._mark is None:
            return
        self._set_busy(True, "Remembering…")
        self._pending_mark = group
        self._mark(group)

    def marked(self, group: DuplicateGroup, error: str) -> None:
        """The worker's answer (GUI thread), for this dialog's request only."""
        if group is not self._pending_mark:
            return
        self._pending_mark = None
        if error:
            self._set_busy(False, f"Could not remember it: {error}")
            return
        self._set_busy(False, "Marked as not duplicates; they are not grouped again.")
        self._drop_group(group)

    def _drop_group(self, group: DuplicateGroup) -> None:
        if group in self.groups:
            row = self.groups.index(group)
            self.groups.pop(row)
            item = self.group_list.takeItem(row)
            del item
            self._show_group(self.group_list.currentRow())

    # -- state --------------------------------------------------------------------------
    def _set_busy(self, busy: bool, text: str) -> None:
        self.busy = busy
        self.status.setText(text)
        self._enable()

    def _enable(self) -> None:
        has_group = self.current_group() is not None and not self.busy
        for b in (self.keep_largest, self.keep_newest, self.trash_button, self.not_dup_button):
            b.setEnabled(has_group)
        self.find_button.setEnabled(not self.busy)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.cancel.set()  # a running finder stops at its next batch
        super().closeEvent(event)

    def reject(self) -> None:
        self.cancel.set()
        super().reject()


def describe_file(f: DuplicateFile) -> str:
    dims = f"{f.width} × {f.height} px" if f.width and f.height else "size unknown"
    size = f"{f.size / 1e6:.1f} MB" if f.size >= 1e5 else f"{f.size / 1e3:.0f} KB"
    return f"{dims}\n{size}\n{when_label(f.taken, f.mtime_ns)}"


def describe_group(g: DuplicateGroup) -> str:
    first = Path(g.files[0].path).name if g.files else ""
    return f"{len(g.files)} × {g.kind} ({g.score:.3f}) · {first}"
