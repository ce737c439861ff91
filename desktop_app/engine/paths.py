"""Where the app keeps its data, settings, caches and logs.

Every directory is overridable: ``DESKTOP_APP_HOME`` moves all of them under one folder
(tests use it so they never touch a user's data); ``--data-dir`` moves the data alone.
A path that names a file where a folder must be gets a clear message. Threads: any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from desktop_app.engine.errors import DesktopAppError

APP_DIR_NAME = "desktop-app"
HOME_ENV = "DESKTOP_APP_HOME"


@dataclass(frozen=True)
class AppDirs:
    data: Path
    config: Path
    cache: Path
    logs: Path

    @property
    def catalog_path(self) -> Path:
        return self.data / "catalog.sqlite3"

    @property
    def chroma_path(self) -> Path:
        return self.data / "chroma"

    @property
    def settings_path(self) -> Path:
        return self.config / "settings.json"

    @property
    def thumbnails(self) -> Path:
        return self.cache / "thumbnails"

    def ensure(self) -> AppDirs:
        for d in (self.data, self.config, self.cache, self.logs):
            if d.exists() and not d.is_dir():
                raise DesktopAppError(
                    f"{d} is a file, not a folder: give --data-dir (or {HOME_ENV}) a folder"
                )
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DesktopAppError(
                    f"cannot create the folder {d}: {exc.strerror or exc}"
                ) from exc
        return self


def resolve_dirs(data_dir: Path | str | None = None) -> AppDirs:
    """The app's directories: ``data_dir`` wins for data, then ``$DESKTOP_APP_HOME``,
    then the platform's conventional places."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser()
        dirs = AppDirs(root / "data", root / "config", root / "cache", root / "logs")
    else:
        dirs = AppDirs(
            Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False)),
            Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False)),
            Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False)),
            Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False)),
        )
    if data_dir is not None:
        dirs = AppDirs(Path(data_dir).expanduser().resolve(), dirs.config, dirs.cache, dirs.logs)
    return dirs
