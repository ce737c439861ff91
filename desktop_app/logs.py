"""Logging set-up shared by the command line and the window: a rotating log file in the
logs dir, and plain warnings on stderr for the command line."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path


def setup_logging(log_dir: Path, *, verbose: bool = False, stderr: bool = True) -> None:
    root = logging.getLogger()
    if getattr(root, "_desktop_app_configured", False):
        return
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            log_dir / "desktop-app.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
        fh.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        )
        root.addHandler(fh)
    except OSError:
        pass  # a read-only log dir must not stop the app
    if stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setLevel(logging.DEBUG if verbose else logging.WARNING)
        sh.setFormatter(logging.Formatter("desktop-app: %(levelname)s: %(message)s"))
        sh.addFilter(logging.Filter("desktop_app"))
        root.addHandler(sh)
    root._desktop_app_configured = True  # type: ignore[attr-defined]
