"""Dialogs: settings and the failure list (unexpected errors: ``errors.py``).

GUI thread only."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.settings import DEFAULT_CLIP_MODEL, DEVICES, OFFLINE_MODEL, Settings
from desktop_app.engine.status import Failure
from desktop_app.ui.file_actions import FileActions

log = logging.getLogger(__name__)

MODEL_CHOICES = [
    OFFLINE_MODEL,
    DEFAULT_CLIP_MODEL,
    "ViT-B-16:laion2b_s34b_b88k",
    "ViT-L-14:laion2b_s32b_b82k",
]


class SettingsDialog(QDialog):
    def __init__(
        self,
        settings: Settings,
        parent: QWidget | None = None,
        running: str = "",
        why: str = "",
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        # the encoder actually running (a fallback when the configured one cannot load)
        self.running = QLabel(describe_running(settings.model, running, why))
        self.running.setWordWrap(True)
        self.running.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(MODEL_CHOICES)
        self.model.setCurrentText(settings.model)
        self.model.setToolTip(
            "efficientnet-lite0 works offline; CLIP models (ARCH:PRETRAINED) "
            "add text search and download their weights once."
        )
        browse = QPushButton("Weights file…")
        browse.clicked.connect(self._pick_weights)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.device.setCurrentText(settings.device)
        self.batch = QSpinBox()
        self.batch.setRange(0, 1024)
        self.batch.setSpecialValueText("automatic")
        self.batch.setValue(settings.batch_size)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-1.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(settings.threshold)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 10_000)
        self.top_k.setValue(settings.top_k)
        self.megapixels = QDoubleSpinBox()
        self.megapixels.setRange(1, 2000)
        self.megapixels.setSuffix(" MP")
        self.megapixels.setValue(settings.max_megapixels)
        self.file_types = QLineEdit(", ".join(settings.file_types))
        self.regions = QCheckBox("Index image regions (find crops and partial matches)")
        self.regions.setChecked(settings.regions_enabled)
        form = QFormLayout()
        form.addRow("Encoder", model_row)
        form.addRow("Running", self.running)
        form.addRow("Device", self.device)
        form.addRow("Batch size", self.batch)
        form.addRow("Default threshold", self.threshold)
        form.addRow("Default result count", self.top_k)
        form.addRow("Largest image", self.megapixels)
        form.addRow("File types", self.file_types)
        form.addRow("", self.regions)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self._base = settings

    def _pick_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "CLIP weights file", "", "Weights (*.pt *.pth *.bin *.safetensors)"
        )
        if path:
            arch = self.model.currentText().partition(":")[0]
            if arch == OFFLINE_MODEL or not arch:
                arch = "ViT-B-32"
            self.model.setCurrentText(f"{arch}:{path}")

    def result_settings(self) -> Settings:
        s = Settings(**{**self._base.__dict__})
        s.model = self.model.currentText().strip() or OFFLINE_MODEL
        s.device = self.device.currentText()
        s.batch_size = self.batch.value()
        s.threshold = self.threshold.value()
        s.top_k = self.top_k.value()
        s.max_megapixels = self.megapixels.value()
        s.file_types = [t.strip() for t in self.file_types.text().split(",") if t.strip()]
        s.regions_enabled = self.regions.isChecked()
        s.validate()
        return s


def describe_running(configured: str, running: str, why: str) -> str:
    """The running encoder, and why it is not the configured one when it is not."""
    if not running:
        return "loading…"
    if why:
        return f"{running}, not {configured}: {why}"
    return running


class FailuresDialog(QDialog):
    """The files that could not be indexed; the selected ones can be retried, ignored
    (hidden from this list for the session) or shown in the file manager."""

    retry_requested = Signal(str)  # path
    ignore_requested = Signal(str)  # path

    def __init__(
        self,
        failures: Sequence[Failure],
        parent: QWidget | None = None,
        files: FileActions | None = None,
    ) -> None:
        super().__init__(parent)
        self.files = files or FileActions(self)  # the window's, so a failure is said
        self.setWindowTitle(f"{len(failures)} files could not be indexed")
        self.resize(820, 420)
        table = QTableWidget(len(failures), 2)
        table.setHorizontalHeaderLabels(["File", "Reason"])
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setWordWrap(True)
        for row, f in enumerate(failures):
            table.setItem(row, 0, QTableWidgetItem(f.path))
            reason = QTableWidgetItem(f.reason)
            reason.setToolTip(f.reason)
            table.setItem(row, 1, reason)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        table.horizontalHeader().setStretchLastSection(True)
        table.setColumnWidth(0, 380)
        table.resizeRowsToContents()
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.retry_button = QPushButton("Retry")
        self.ignore_button = QPushButton("Ignore")
        self.reveal_button = QPushButton("Show in folder")
        for b, slot in (
            (self.retry_button, self.retry_selected),
            (self.ignore_button, self.ignore_selected),
            (self.reveal_button, self.reveal_selected),
        ):
            buttons.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
            b.clicked.connect(slot)
        buttons.rejected.connect(self.reject)
        table.itemSelectionChanged.connect(self._selection_changed)
        self._selection_changed()
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)

    def selected_paths(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self._path(r) for r in rows]

    def paths(self) -> list[str]:
        return [self._path(r) for r in range(self.table.rowCount())]

    def _path(self, row: int) -> str:
        item = self.table.item(row, 0)
        return item.text() if item is not None else ""

    def retry_selected(self) -> None:
        """Index the selected files again; they leave the list (a new failure comes back)."""
        for path in self.selected_paths():
            self.retry_requested.emit(path)
        self._drop_selected()

    def ignore_selected(self) -> None:
        for path in self.selected_paths():
            self.ignore_requested.emit(path)
        self._drop_selected()

    def reveal_selected(self) -> None:
        paths = self.selected_paths()
        if paths:
            self.files.show_in_folder(paths[0])

    def _drop_selected(self) -> None:
        for row in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(row)
        self.setWindowTitle(f"{self.table.rowCount()} files could not be indexed")

    def _selection_changed(self) -> None:
        some = bool(self.table.selectedIndexes())
        for b in (self.retry_button, self.ignore_button, self.reveal_button):
            b.setEnabled(some)
