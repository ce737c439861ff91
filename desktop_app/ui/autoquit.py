"""`desktop-app gui --quit-after S [--screenshot PATH]`: close the window after S seconds,
saving what it shows first.

For the packaged app's smoke test (a frozen bundle that forgets a Qt plugin passes every
headless check, so the build opens the real window under Xvfb and keeps its picture) and
for documentation screenshots. Everything here runs on the GUI thread: a QTimer parented
to the window fires there.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget

log = logging.getLogger(__name__)


def quit_later(window: QWidget, seconds: float, screenshot: Path | None = None) -> QTimer:
    """After `seconds`, save `window` to `screenshot` (when given) and close it.

    A screenshot that cannot be written ends the event loop with status 1, so a smoke
    test notices; the window is closed either way, which runs its normal shutdown.
    """
    timer = QTimer(window)
    timer.setSingleShot(True)

    def fire() -> None:
        status = 0
        if screenshot is not None:
            saved = window.grab().save(str(screenshot))
            if saved:
                log.info("saved a screenshot of the window to %s", screenshot)
            else:
                print(f"desktop-app: error: could not save {screenshot}", file=sys.stderr)
                status = 1
        window.close()
        app = QApplication.instance()
        if app is not None:
            app.exit(status)

    timer.timeout.connect(fire)
    timer.start(max(0, int(seconds * 1000)))
    return timer
