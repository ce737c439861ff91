"""Lint and types are part of the test command: ruff on everything, mypy on the whole package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def test_ruff_lint_is_clean() -> None:
    proc = subprocess.run(
        [tool("ruff"), "check", "desktop_app", "tests", "bench", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_on_the_package_is_clean() -> None:
    # The strictness (untyped defs, unreachable code, bare generics in the engine) is
    # declared in pyproject.toml, so a plain `mypy desktop_app` checks the same thing.
    proc = subprocess.run([tool("mypy"), "desktop_app"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
