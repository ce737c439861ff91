"""Starting the desktop window."""

from __future__ import annotations

import sys
from pathlib import Path


def run_gui(data_dir: Path | str | None = None) -> int:
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    window = QMainWindow()
    window.setWindowTitle("desktop-app")
    window.resize(1100, 720)
    window.show()
    return app.exec()
