"""The search tool bar: open, back and forward, result count, threshold, sort order,
thumbnail size, add folder and settings.

A view part: it holds the actions and controls and says what the user changed; what a
change leads to is decided by the controller. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QSlider, QSpinBox, QToolBar, QWidget

from desktop_app.engine.settings import MAX_THUMBNAIL_SIZE, MIN_THUMBNAIL_SIZE, SORT_ORDERS


class SearchToolBar(QToolBar):
    limits_changed = Signal(int, float)  # result count, threshold
    sort_changed = Signal(str)
    zoom_changed = Signal(int)  # thumbnail side in pixels

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Search", parent)
        self.setObjectName("search-toolbar")
        self.open_action = QAction("Open image…", self)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.back_action = QAction("Back", self)
        self.back_action.setShortcut(QKeySequence("Alt+Left"))
        self.forward_action = QAction("Forward", self)
        self.forward_action.setShortcut(QKeySequence("Alt+Right"))
        self.add_folder_action = QAction("Add folder…", self)
        self.settings_action = QAction("Settings…", self)
        for action in (self.open_action, self.back_action, self.forward_action):
            self.addAction(action)
        self.set_history(False, False)
        self.addSeparator()
        self.addWidget(QLabel(" Results "))
        self.count_box = QSpinBox()
        self.count_box.setRange(1, 10_000)
        self.addWidget(self.count_box)
        self.addWidget(QLabel("  Threshold "))
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setFixedWidth(140)
        self.threshold_label = QLabel()
        self.addWidget(self.threshold_slider)
        self.addWidget(self.threshold_label)
        self.addWidget(QLabel("  Sort "))
        self.sort_box = QComboBox()
        self.sort_box.addItems(list(SORT_ORDERS))
        self.addWidget(self.sort_box)
        self.addWidget(QLabel("  Size "))
        self.zoom_slider = QSlider(Qt.Orientation.Horizontal)
        self.zoom_slider.setRange(MIN_THUMBNAIL_SIZE, MAX_THUMBNAIL_SIZE)
        self.zoom_slider.setFixedWidth(120)
        self.addWidget(self.zoom_slider)
        self.addSeparator()
        self.addAction(self.add_folder_action)
        self.addAction(self.settings_action)
        self._show_threshold()
        self.count_box.valueChanged.connect(self._limits_moved)
        self.threshold_slider.valueChanged.connect(self._limits_moved)
        self.sort_box.currentTextChanged.connect(self.sort_changed)
        self.zoom_slider.valueChanged.connect(self.zoom_changed)

    def set_values(self, top_k: int, threshold: float, sort_order: str, thumb_side: int) -> None:
        """Show these values without announcing them as the user's changes."""
        self.blockSignals(True)  # our own signals; the controls' signals still run
        self.count_box.setValue(top_k)
        self.threshold_slider.setValue(round(max(0.0, threshold) * 100))
        self.sort_box.setCurrentText(sort_order)
        self.zoom_slider.setValue(thumb_side)
        self.blockSignals(False)

    def set_count(self, top_k: int) -> None:
        self.count_box.setValue(top_k)

    def set_zoom(self, side: int) -> None:
        self.zoom_slider.setValue(side)

    def set_history(self, can_back: bool, can_forward: bool) -> None:
        self.back_action.setEnabled(can_back)
        self.forward_action.setEnabled(can_forward)

    def threshold(self) -> float:
        return self.threshold_slider.value() / 100.0

    def _limits_moved(self, _value: int) -> None:
        self._show_threshold()
        self.limits_changed.emit(self.count_box.value(), self.threshold())

    def _show_threshold(self) -> None:
        self.threshold_label.setText(f"{self.threshold():.2f}")
