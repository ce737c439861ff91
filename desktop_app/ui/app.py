"""Starting the desktop window: the QApplication, the library, the window and its event
loop, all on the main thread, which Qt makes the GUI thread."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.paths import resolve_dirs
from desktop_app.logs import setup_logging

log = logging.getLogger(__name__)


def run_gui(data_dir: Path | str | None = None) -> int:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QMessageBox

    from desktop_app.engine.library import Library
    from desktop_app.ui.dialogs import install_excepthook
    from desktop_app.ui.main_window import MainWindow

    dirs = resolve_dirs(data_dir)
    setup_logging(dirs.logs, stderr=False)
    existing = QApplication.instance()
    # a QCoreApplication cannot show windows: the GUI needs the QApplication it made or finds
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv)
    app.setApplicationName("desktop-app")
    app.setOrganizationName("desktop-app")
    icon = Path(__file__).resolve().parent.parent.parent / "resources" / "desktop-app.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    try:
        library = Library(dirs)
    except DesktopAppError as exc:
        QMessageBox.critical(None, "desktop-app", str(exc))
        return 1
    window = MainWindow(library)
    install_excepthook(lambda: window)
    window.show()
    try:
        return app.exec()
    finally:
        window.shutdown()
        library.close()
