"""The engine stays Qt-free: usable from the CLI, plain pytest and the GUI alike."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).parent.parent / "desktop_app" / "engine"
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy")


def test_no_qt_import_in_engine_source() -> None:
    offenders = []
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in QT]
    assert offenders == []


def test_importing_the_engine_loads_no_qt() -> None:
    code = (
        "import sys, desktop_app.engine.library, desktop_app.engine.indexer, "
        "desktop_app.engine.encoders.efficientnet, desktop_app.engine.encoders.clip, "
        "desktop_app.cli;"
        f"bad=[m for m in sys.modules if m.split('.')[0] in {QT!r}]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
