"""A first-run CLIP weights download: its size and progress in a dialog that can cancel.

The engine calls the progress callback on the thread that downloads (the indexing
worker); :class:`DownloadMonitor` turns each call into a queued signal for the GUI
thread and raises :class:`DownloadCancelled` there once the user cancelled, so the
download stops at its next chunk and the offline encoder runs with the reason. The worker
wraps it (``clip_weights.cancellable``) with its own cancel event too, so quitting (or
cancelling the job) also stops a download at its next chunk. The dialog lives on the GUI
thread.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from desktop_app.engine.errors import DownloadCancelled

MB = 1 << 20


class DownloadMonitor(QObject):
    # objects, not ints: a Qt int is 32 bits and weights past 2 GB would overflow the emit
    progressed = Signal(object, object, str)  # done bytes, total bytes, description

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cancel = threading.Event()

    def report(self, done: int, total: int, description: str) -> None:
        """The engine's progress callback; any thread. Raises once cancelled."""
        if self.cancel.is_set():
            raise DownloadCancelled("the download of the CLIP weights was cancelled")
        self.progressed.emit(done, total, description)

    def reset(self) -> None:
        self.cancel.clear()


class DownloadDialog(QProgressDialog):
    """Shown at the first progress report; says the size and how much has arrived."""

    def __init__(self, monitor: DownloadMonitor, parent: QWidget | None = None) -> None:
        super().__init__("Downloading the model weights…", "Cancel", 0, 100, parent)
        self.setWindowTitle("Downloading the model")
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.setAutoClose(False)
        self.setAutoReset(False)
        self.setMinimumDuration(0)
        self.monitor = monitor
        self.canceled.connect(self._cancel)
        self.cancelled = False

    def show_progress(self, done: int, total: int, description: str) -> None:
        if self.cancelled:
            return
        if total > 0:
            self.setMaximum(100)
            self.setValue(min(100, round(100 * done / total)))
            text = f"{description}: {done / MB:.0f} of {total / MB:.0f} MB"
        else:
            self.setMaximum(0)  # size unknown: a busy bar
            text = f"{description}: {done / MB:.0f} MB"
        self.setLabelText(text)
        if total > 0 and done >= total:
            self.setLabelText(f"{description}: {total / MB:.0f} MB downloaded")
            self.hide()
        elif not self.isVisible():
            self.show()

    def _cancel(self) -> None:
        self.cancelled = True
        self.monitor.cancel.set()
        self.setLabelText("Cancelling… the offline encoder keeps running.")
