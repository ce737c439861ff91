"""The layer contract: cli above ui above engine, and the engine stays Qt-free (usable
from the CLI, plain pytest and the GUI alike). The contracts are declared in
pyproject.toml ([tool.importlinter]) and checked here by import-linter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy")


def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
        "lint-imports"
    )
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    # This checkout's package, whichever copy is installed; no cache written into the repo.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [exe, "--no-cache", "--no-logo"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_importing_the_engine_loads_no_qt() -> None:
    # import-linter sees this package's own imports; this also catches Qt pulled in
    # through a third-party library the engine uses.
    code = (
        "import sys, desktop_app.engine.library, desktop_app.engine.indexer, "
        "desktop_app.engine.encoders.efficientnet, desktop_app.engine.encoders.clip, "
        "desktop_app.cli;"
        f"bad=[m for m in sys.modules if m.split('.')[0] in {QT!r}]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
