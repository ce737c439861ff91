"""The watched-folders panel: add (native dialog) and remove (after confirmation).

GUI thread only; it asks, the controller does (the worker indexes or forgets the folder)."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class FolderPanel(QWidget):
    add_requested = Signal(str)
    remove_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("folders")
        self.list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.add_button = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setEnabled(False)
        self.add_button.clicked.connect(self.choose_folder)
        self.remove_button.clicked.connect(self._remove_selected)
        self.list.itemSelectionChanged.connect(
            lambda: self.remove_button.setEnabled(bool(self.list.selectedItems()))
        )
        title = QLabel("<b>Watched folders</b>")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(title)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.confirm_removal = True  # tests switch the modal confirmation off

    def set_folders(self, roots: list[dict[str, object]]) -> None:
        """``roots`` as ``RootStatus.to_json()`` gives them: [{"path": ..., "online": bool,
        "files": n}]; before the first status only "path" is known."""
        selected = self.selected()
        self.list.clear()
        for root in roots:
            path = str(root["path"])
            text = path
            if "files" in root:
                text += f"  ({root['files']} images)"
            if not root.get("online", True):
                text += "  — offline"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(
                path
                if root.get("online", True)
                else f"{path}\nNot reachable now; its images stay in the index and "
                "come back when it returns."
            )
            if not root.get("online", True):
                item.setForeground(self.palette().placeholderText())
            self.list.addItem(item)
            if path == selected:
                item.setSelected(True)

    def folders(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def selected(self) -> str | None:
        items = self.list.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Add a folder to watch", os.path.expanduser("~")
        )
        if folder:
            self.add_requested.emit(folder)

    def _remove_selected(self) -> None:
        path = self.selected()
        if path is None:
            return
        if self.confirm_removal:
            answer = QMessageBox.question(
                self,
                "Remove folder",
                f"Stop watching {path} and take its images out of the index?\n"
                "The files themselves are not touched.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.remove_requested.emit(path)
