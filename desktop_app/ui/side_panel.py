"""The left panel: the query (drop zone, a line on the query's state, the text search
box) above the watched folders.

A view part: it shows what the controller reports and passes on what the user asks
for. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.ui.folders import FolderPanel
from desktop_app.ui.query_panel import DropZone


class SidePanel(QWidget):
    text_search = Signal(str)  # the typed description, on Enter or the Search button

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.drop_zone = DropZone()
        self.query_label = QLabel("")
        self.query_label.setWordWrap(True)
        self.text_box = QLineEdit()
        self.text_box.setPlaceholderText("Loading the encoder…")
        self.text_box.setEnabled(False)
        self.text_button = QPushButton("Search")
        self.text_button.setEnabled(False)
        self.folders = FolderPanel()
        # Ctrl+V anywhere in the window pastes a query image (a window-wide shortcut)
        self.paste_action = QAction("Paste", self)
        self.paste_action.setShortcut(QKeySequence.StandardKey.Paste)
        self.addAction(self.paste_action)
        text_row = QHBoxLayout()
        text_row.addWidget(self.text_box, 1)
        text_row.addWidget(self.text_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Query</b>"))
        layout.addWidget(self.drop_zone, 3)
        layout.addWidget(self.query_label)
        layout.addLayout(text_row)
        layout.addSpacing(8)
        layout.addWidget(self.folders, 2)
        self.text_box.returnPressed.connect(self._text_entered)
        self.text_button.clicked.connect(self._text_entered)
        self.paste_action.triggered.connect(self.paste)

    def paste(self) -> None:
        mime = QApplication.clipboard().mimeData()
        if mime is not None and not self.drop_zone.handle_mime(mime):
            self.drop_zone.rejected.emit("The clipboard holds no image")

    def set_text_search(self, available: bool, encoder: str) -> None:
        """Enable the text box when the encoder has a text tower; say why not otherwise."""
        self.text_box.setEnabled(available)
        self.text_button.setEnabled(available)
        self.text_box.setPlaceholderText(
            "Describe a photo, e.g. a red dress"
            if available
            else "Text search needs a CLIP model (Settings → Encoder)"
        )
        self.text_box.setToolTip(
            ""
            if available
            else f"{encoder} has no text tower; choose a CLIP model in Settings to search by text."
        )

    def _text_entered(self) -> None:
        self.text_search.emit(self.text_box.text())
