"""The filter bar: narrow the results by watched folder, file type, date taken (EXIF,
else modified), minimum dimensions and match kind.

A view part: it turns its controls into one ``ResultFilter`` (engine/filters.py) and
emits it; the controller re-runs the query with it and the engine applies it right
after the vector store lookup. Dates are EXIF capture dates, else the files' modified
dates (``FileRow.day``). GUI thread only.
"""

from __future__ import annotations

from datetime import date

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolBar,
    QWidget,
)

from desktop_app.engine.filters import NO_FILTER, ResultFilter

ANY_DATE = QDate(1900, 1, 1)  # the date edits' minimum, shown as "any"
MATCH_CHOICES = (("Full and partial", ""), ("Full only", "full"), ("Partial only", "partial"))


class FilterBar(QToolBar):
    filter_changed = Signal(object)  # ResultFilter

    def __init__(self, file_types: list[str], parent: QWidget | None = None) -> None:
        super().__init__("Filters", parent)
        self.setObjectName("filter-toolbar")
        self.folder_box = QComboBox()
        self.folder_box.addItem("All folders", "")
        self.folder_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.type_box = QComboBox()
        self.type_box.addItem("All types", "")
        for ext in file_types:
            self.type_box.addItem(ext, ext)
        self.date_from = _date_edit(
            "Taken on or after this day (EXIF date; the modified date when it has none)"
        )
        self.date_to = _date_edit(
            "Taken on or before this day (EXIF date; the modified date when it has none)"
        )
        self.min_width = _pixels_box("Narrowest image to show")
        self.min_height = _pixels_box("Lowest image to show")
        self.match_box = QComboBox()
        for label, value in MATCH_CHOICES:
            self.match_box.addItem(label, value)
        self.clear_button = QPushButton("Clear filters")
        self.error = QLabel()
        self.error.setStyleSheet("color: #c0392b")
        for label, widget in (
            (" Filter: ", self.folder_box),
            (" ", self.type_box),
            ("  Taken ", self.date_from),
            (" to ", self.date_to),
            ("  At least ", self.min_width),
            (" × ", self.min_height),
            ("  ", self.match_box),
            ("  ", self.clear_button),
            ("  ", self.error),
        ):
            self.addWidget(QLabel(label))
            self.addWidget(widget)
        self._quiet = False
        for box in (self.folder_box, self.type_box, self.match_box):
            box.currentIndexChanged.connect(self._changed)
        for edit in (self.date_from, self.date_to):
            edit.dateChanged.connect(self._changed)
        for spin in (self.min_width, self.min_height):
            spin.valueChanged.connect(self._changed)
        self.clear_button.clicked.connect(self.clear)
        self.current: ResultFilter = NO_FILTER

    def set_folders(self, roots: list[dict[str, object]]) -> None:
        """The watched folders to choose from; the choice is kept when still there."""
        chosen = self.folder_box.currentData()
        self._quiet = True
        self.folder_box.clear()
        self.folder_box.addItem("All folders", "")
        for r in roots:
            path = str(r["path"])
            self.folder_box.addItem(path, path)
        at = self.folder_box.findData(chosen)
        self.folder_box.setCurrentIndex(max(0, at))
        self._quiet = False
        if at < 0 and chosen:
            self._changed()  # the chosen folder went away: the filter follows

    def clear(self) -> None:
        self._quiet = True
        for box in (self.folder_box, self.type_box, self.match_box):
            box.setCurrentIndex(0)
        for edit in (self.date_from, self.date_to):
            edit.setDate(ANY_DATE)
        for spin in (self.min_width, self.min_height):
            spin.setValue(0)
        self._quiet = False
        self._changed()

    def result_filter(self) -> ResultFilter:
        """The controls as a filter; raises ValueError for a contradiction (dates)."""
        folder = self.folder_box.currentData() or ""
        ext = self.type_box.currentData() or ""
        return ResultFilter(
            folders=(folder,) if folder else (),
            file_types=(ext,) if ext else (),
            date_from=_day(self.date_from),
            date_to=_day(self.date_to),
            min_width=self.min_width.value(),
            min_height=self.min_height.value(),
            match=self.match_box.currentData() or "",
        )

    def _changed(self, *_args: object) -> None:
        if self._quiet:
            return
        try:
            f = self.result_filter()
        except ValueError as exc:  # shown beside the controls; the last good filter stays
            self.error.setText(str(exc))
            return
        self.error.setText("")
        if f != self.current:
            self.current = f
            self.filter_changed.emit(f)


def _date_edit(tip: str) -> QDateEdit:
    edit = QDateEdit()
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    edit.setMinimumDate(ANY_DATE)
    edit.setSpecialValueText("any")  # shown at the minimum: no bound
    edit.setDate(ANY_DATE)
    edit.setToolTip(tip)
    return edit


def _pixels_box(tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(0, 100_000)
    box.setSingleStep(100)
    box.setSpecialValueText("any")
    box.setSuffix(" px")
    box.setToolTip(tip)
    return box


def _day(edit: QDateEdit) -> date | None:
    d = edit.date()
    return None if d == ANY_DATE else date(d.year(), d.month(), d.day())
