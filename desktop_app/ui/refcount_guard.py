"""A guard against a PySide6 reference-count bug that aborts the app after a while.

PySide6 6.12.0 on Python 3.10 and 3.11 gives back ``None`` from every method that
returns nothing (a painter's save(), a widget's update(), processEvents()...)
without taking a reference to it, and ``index.data(role)`` does the same when the model
answers ``None``. From Python 3.12 ``None``, ``True`` and ``False`` are immortal and this
costs nothing; before, each such call takes one reference from ``None`` for good, and
once its count reaches zero the interpreter aborts ("Fatal Python error: none_dealloc:
deallocating None"). A painted grid makes millions of such calls: the soak
(``bench/soak.py``) died of it within minutes, on a random thread's stack.

The guard checks for the bug with a few harmless calls and, only where it is present,
gives ``None``, ``True`` and ``False`` a reserve of references (2**48) no run can use
up: in effect the immortality Python 3.12 gives them. It runs once, when ``desktop_app.ui``
is first imported, on whatever thread imports it (before any window exists).
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

RESERVE = 1 << 48
_SINGLETONS = (None, True, False)
_installed = False


def pyside_drops_none() -> bool:
    """True when calling a PySide6 method that returns nothing costs ``None`` a reference."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(64):
        probe.setObjectName("probe")
    return sys.getrefcount(None) <= before - 32


def install() -> bool:
    """Give the singletons their reserve if this PySide6 needs it; True when it did."""
    global _installed
    if _installed or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return _installed
    if not pyside_drops_none():
        return False
    for obj in _SINGLETONS:
        # ob_refcnt is a PyObject's first field (Py_ssize_t) in CPython's release builds
        ctypes.c_ssize_t.from_address(id(obj)).value += RESERVE
    _installed = True
    log.info("PySide6 drops references to None here: gave None/True/False a reserve")
    return True
