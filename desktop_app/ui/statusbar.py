"""The status bar: how many images are indexed, the queue, failures, the encoder, and
indexing progress with pause and cancel.

A view part: it shows what the controller reports and says which button was pressed.
Its labels are permanent widgets, so a transient message (showMessage) never hides the
counts. GUI thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from desktop_app.engine.indexer import Progress
from desktop_app.engine.status import LibraryStatus


class IndexStatusBar(QStatusBar):
    pause_clicked = Signal()
    cancel_clicked = Signal()
    failures_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # the counts come from the catalog as the window starts: until then, unknown
        self.files_label = QLabel("Loading…")
        self.queue_label = QLabel("")
        self.failures_button = QPushButton("")
        self.failures_button.setFlat(True)
        self.failures_button.hide()
        self.encoder_label = QLabel("Loading encoder…")
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setTextVisible(True)
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        for w in (self.progress, self.pause_button, self.cancel_button):
            w.hide()
        for part in (
            self.files_label,
            self.queue_label,
            self.failures_button,
            self.progress,
            self.pause_button,
            self.cancel_button,
            self.encoder_label,
        ):
            self.addPermanentWidget(part)
        self.pause_button.clicked.connect(self.pause_clicked)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self.failures_button.clicked.connect(self.failures_clicked)

    def show_progress(self, p: Progress) -> None:
        self.progress.show()
        self.progress.setMaximum(max(p.total, 1))
        self.progress.setValue(p.done)
        self.progress.setFormat(f"{p.phase} %v/%m")
        if p.store_error:
            # uploads wait in the catalog; indexing goes on (engine/shared.py)
            self.showMessage(f"Uploads paused: {p.store_error}", 10000)
        elif p.current:
            self.showMessage(f"Indexing {Path(p.current).name}", 2000)

    def set_busy(self, busy: bool) -> None:
        for w in (self.progress, self.pause_button, self.cancel_button):
            w.setVisible(busy)
        if busy:
            self.progress.setMaximum(0)  # busy indicator until the first progress value
        self.pause_button.setText("Pause")

    def set_paused(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")

    def set_queue_length(self, n: int) -> None:
        self.queue_label.setText(f"{n} queued" if n else "")

    def set_encoder(self, description: str) -> None:
        self.encoder_label.setText(description)
        self.encoder_label.setToolTip("")

    def set_encoder_failed(self, reason: str) -> None:
        """The encoder did not load: say so where "Loading encoder…" was, reason on hover."""
        self.encoder_label.setText("No encoder (loading failed)")
        self.encoder_label.setToolTip(reason)

    def show_counts(self, files: int, failed: int) -> None:
        self.files_label.setText(f"{files:,} images indexed" if files else "No images yet")
        self.failures_button.setVisible(bool(failed))
        self.failures_button.setText(f"{failed} failed — show")

    def show_status(self, st: LibraryStatus) -> None:
        """The counts from Library.status()."""
        self.show_counts(st.files, st.failed)
