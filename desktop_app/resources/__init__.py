"""Files the running app reads from its own package: the window icon in every size.

They are package data (see `[tool.setuptools.package-data]` in pyproject.toml), so a wheel
install, an editable install and the frozen bundle all find them through
`importlib.resources`, never beside a source tree. `installer/make_icons.py` renders them
from `resources/desktop-app.svg`. No Qt here: the GUI turns these paths into a QIcon.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def icon_paths() -> list[Path]:
    """The app icon's PNG renderings, smallest first, that exist on disk.

    Empty when the package was installed without its data (a broken install): the window
    then simply has no icon rather than failing to start.
    """
    icons = files(__name__) / "icons"
    found = []
    for size in ICON_SIZES:
        entry = icons / f"desktop-app-{size}.png"
        # A wheel or a frozen bundle unpacks to real files; a zipped install would not,
        # and QIcon needs a file path, so such entries are skipped.
        if entry.is_file() and isinstance(entry, Path):
            found.append(entry)
    return found
