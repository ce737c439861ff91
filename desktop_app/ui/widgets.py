"""Small widgets shared by the window's parts. GUI thread only.

``FittingLabel`` is the query line's label: a long file name (one unbreakable word) is
elided in the middle instead of widening the side panel, and the rest of the text (an
error message) wraps instead of being clipped.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class FittingLabel(QLabel):
    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        # never asks for more width than the layout gives: the panel keeps its size
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(1)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self._full = ""
        self.setText(text)

    def full_text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name, so signals can target it
        self._full = text
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        width = max(40, self.contentsRect().width())
        metrics = self.fontMetrics()
        words = []
        for word in self._full.split(" "):
            lines = [
                metrics.elidedText(line, Qt.TextElideMode.ElideMiddle, width)
                for line in word.split("\n")
            ]
            words.append("\n".join(lines))
        super().setText(" ".join(words))
