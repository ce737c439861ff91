"""Logging set-up shared by the command line and the window: a rotating log file in the
logs dir, and plain warnings on stderr for the command line.

Called once per command in practice; a second call with another logs dir (tests run many
commands in one process) replaces the handlers it added rather than stacking them.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(log_dir: Path, *, verbose: bool = False, stderr: bool = True) -> None:
    root = logging.getLogger()
    key = (str(log_dir), verbose, stderr)
    if getattr(root, "_desktop_app_configured", None) == key:
        return
    for handler in getattr(root, "_desktop_app_handlers", []):
        root.removeHandler(handler)
        handler.close()
    added: list[logging.Handler] = []
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            log_dir / "desktop-app.log",
            maxBytes=2_000_000,
            backupCount=3,
            encoding="utf-8",
            errors="backslashreplace",  # a file name that is not UTF-8 must not break logging
        )
        fh.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        )
        added.append(fh)
    except OSError:
        pass  # a read-only log dir must not stop the app
    if stderr:
        sh = _StderrHandler()
        sh.setLevel(logging.DEBUG if verbose else logging.WARNING)
        sh.setFormatter(logging.Formatter("desktop-app: %(levelname)s: %(message)s"))
        sh.addFilter(logging.Filter("desktop_app"))
        sh.addFilter(lambda record: record.exc_info is None or verbose)  # tracebacks: file only
        added.append(sh)
    for handler in added:
        root.addHandler(handler)
    root._desktop_app_configured = key  # type: ignore[attr-defined]
    root._desktop_app_handlers = added  # type: ignore[attr-defined]
