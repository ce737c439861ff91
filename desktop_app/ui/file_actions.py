"""Open a result, or show it in the file manager, and say so when that cannot be done.

Both used to fail in silence: ``QDesktopServices.openUrl`` returns False when no
application handles the file, and the file manager was asked over D-Bus by a
``dbus-send`` that was never waited for (a zombie per click) and whose failure (no file
manager on the session bus, no session bus) went unnoticed. Here the helper runs as a
``QProcess``, which Qt reaps, its exit status is read, and a failure falls back to
opening the parent folder; what still fails becomes a ``failed`` message for the status
bar.

Threads: GUI thread only (QProcess reports through its signals on this thread).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QUrl, Signal
from PySide6.QtGui import QDesktopServices

log = logging.getLogger(__name__)

# the file manager's D-Bus reply: without --print-reply dbus-send never learns of a failure
DBUS_REPLY_TIMEOUT_MS = 5000

Command = tuple[str, list[str]]


def reveal_command(path: str) -> Command:
    """The platform's way to show a file selected in its file manager."""
    if sys.platform == "win32":
        return "explorer", ["/select,", os.path.normpath(path)]
    if sys.platform == "darwin":
        return "open", ["-R", path]
    uri = QUrl.fromLocalFile(path).toString()
    return "dbus-send", [
        "--session",
        "--print-reply",
        f"--reply-timeout={DBUS_REPLY_TIMEOUT_MS}",
        "--dest=org.freedesktop.FileManager1",
        "--type=method_call",
        "/org/freedesktop/FileManager1",
        "org.freedesktop.FileManager1.ShowItems",
        f"array:string:{uri}",
        "string:",
    ]


class FileActions(QObject):
    failed = Signal(str)  # what could not be done, for the status bar
    revealed = Signal(str, bool)  # path, shown (selected or its folder opened)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.command = reveal_command  # replaceable: tests give a command that fails
        self.running: list[QProcess] = []

    def open(self, path: str) -> bool:
        """Open ``path`` in its default application."""
        if QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            return True
        self.failed.emit(f"Could not open {Path(path).name}: no application is set up for it")
        return False

    def show_in_folder(self, path: str) -> None:
        """Show ``path`` selected in the file manager; if that fails, open its folder."""
        program, args = self.command(path)
        proc = QProcess(self)
        proc.setProgram(program)
        proc.setArguments(args)
        proc.setStandardOutputFile(QProcess.nullDevice())
        proc.setStandardErrorFile(QProcess.nullDevice())
        # explorer /select answers 1 even when it worked: there a normal exit is success
        proc.finished.connect(
            lambda code, status: self._done(
                proc,
                path,
                status == QProcess.ExitStatus.NormalExit and (code == 0 or sys.platform == "win32"),
            )
        )
        proc.errorOccurred.connect(lambda error: self._error(proc, path, error))
        self.running.append(proc)
        proc.start()

    def _error(self, proc: QProcess, path: str, error: QProcess.ProcessError) -> None:
        # a crash or a timeout is followed by finished(); a program that never started is not
        if error == QProcess.ProcessError.FailedToStart:
            self._done(proc, path, False)

    def _done(self, proc: QProcess, path: str, ok: bool) -> None:
        if proc not in self.running:
            return
        self.running.remove(proc)
        proc.deleteLater()
        if not ok:
            log.info("%s could not show %s: opening its folder", proc.program(), path)
            ok = QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(path).parent)))
            if not ok:
                self.failed.emit(
                    f"Could not show {Path(path).name} in its folder: no file manager "
                    "answered. Its path can be copied from the menu."
                )
        self.revealed.emit(path, ok)

    def stop(self) -> None:
        """At quit: end helpers still running (a file manager that never answers) and
        reap them, rather than leave Qt to kill them with a warning."""
        for proc in list(self.running):
            self.running.remove(proc)
            proc.kill()
            proc.waitForFinished(1000)
