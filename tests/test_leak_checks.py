"""The Qt leak checks in conftest.py fail a test that leaves Qt work behind, and pass
one that cleans up (a check that cannot fail would be a defect)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text(encoding="utf-8")

LEAKY = """
from PySide6.QtCore import QThread, QTimer

def test_timer_left_running(qtbot):
    timer = QTimer()
    timer.start(10_000)
    test_timer_left_running.keep = timer

def test_thread_left_running(qtbot):
    thread = QThread()
    thread.start()  # runs an event loop until quit()
    test_thread_left_running.keep = thread

def test_clean(qtbot):
    timer = QTimer()
    timer.start(10_000)
    timer.stop()
    thread = QThread()
    thread.start()
    thread.quit()
    thread.wait()
"""


def test_leaks_fail_and_clean_tests_pass(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.replace("from .conftest", "from conftest"))
    pytester.makeini("[pytest]\nqt_api = pyside6\n")
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*QTimer*still active*", "*QThread*still running*"])
