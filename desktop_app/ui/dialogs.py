"""Dialogs: settings and the failure list (unexpected errors: ``errors.py``).

GUI thread only."""

from __future__ import annotations

import logging
from collections.abc import Sequence

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

log = logging.getLogger(__name__)

MODEL_CHOICES = [
    OFFLINE_MODEL,
    DEFAULT_CLIP_MODEL,
    "ViT-B-16:laion2b_s34b_b88k",
    "ViT-L-14:laion2b_s32b_b82k",
]


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
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


class FailuresDialog(QDialog):
    def __init__(self, failures: Sequence[Failure], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{len(failures)} files could not be indexed")
        self.resize(820, 420)
        table = QTableWidget(len(failures), 2)
        table.setHorizontalHeaderLabels(["File", "Reason"])
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for row, f in enumerate(failures):
            table.setItem(row, 0, QTableWidgetItem(f.path))
            table.setItem(row, 1, QTableWidgetItem(f.reason))
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        table.horizontalHeader().setStretchLastSection(True)
        table.setColumnWidth(0, 380)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
