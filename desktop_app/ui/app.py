"""Starting the desktop window: the QApplication, the library, the window and its event
loop, all on the main thread, which Qt makes the GUI thread."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.paths import resolve_dirs
from desktop_app.logs import setup_logging
from desktop_app.resources import icon_paths

log = logging.getLogger(__name__)


def run_gui(
    data_dir: Path | str | None = None,
    *,
    image: Path | None = None,
    quit_after: float | None = None,
    screenshot: Path | None = None,
) -> int:
    """Open the window; search by `image` when given (a file manager's "Open with").

    `quit_after` seconds later the window closes, saved to `screenshot` first when given
    (the packaged app's smoke test and the docs use this).
    """
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QMessageBox

    from desktop_app.engine.library import Library
    from desktop_app.ui.errors import install_excepthook
    from desktop_app.ui.main_window import MainWindow

    dirs = resolve_dirs(data_dir)
    setup_logging(dirs.logs, stderr=False)
    existing = QApplication.instance()
    # a QCoreApplication cannot show windows: the GUI needs the QApplication it made or finds
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv)
    app.setApplicationName("desktop-app")
    app.setOrganizationName("desktop-app")
    # package data, so a wheel install and the frozen app have it too
    icon = QIcon()
    for png in icon_paths():
        icon.addFile(str(png))
    if not icon.isNull():
        QApplication.setWindowIcon(icon)
    try:
        library = Library(dirs)
    except DesktopAppError as exc:
        QMessageBox.critical(None, "desktop-app", str(exc))
        return 1
    window = MainWindow(library)
    install_excepthook(lambda: window)  # the hooks keep the reporter alive
    window.show()
    if image is not None:
        window.search_file(image)
    if quit_after is not None or screenshot is not None:
        from desktop_app.ui.autoquit import quit_later

        quit_later(window, 5.0 if quit_after is None else quit_after, screenshot)
    try:
        return app.exec()
    finally:
        if window.shutdown():
            library.close()
        else:  # closing SQLite or Chroma under a running thread could corrupt them
            log.error("a background thread is still running: the library is left open")
