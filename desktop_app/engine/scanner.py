"""Finding the image files under the library's folders."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundFile:
    path: str
    size: int
    mtime_ns: int


def is_image_name(name: str, extensions: frozenset[str]) -> bool:
    # Dot-files include macOS "._x.jpg" resource forks, which are not images.
    if name.startswith("."):
        return False
    return name.rpartition(".")[2].lower() in extensions


def scan(folder: Path, extensions: Iterable[str], skip: Iterable[Path] = ()) -> Iterator[FoundFile]:
    """Image files under ``folder`` (or ``folder`` itself if it is a file), recursively.

    Hidden folders are skipped, symlinked folders are not followed (no loops), and
    anything unreadable is logged and passed over rather than stopping the scan.
    """
    exts = frozenset(e.lower().lstrip(".") for e in extensions)
    skip_set = {str(p) for p in skip}
    if folder.is_file():
        if is_image_name(folder.name, exts):
            st = folder.stat()
            yield FoundFile(str(folder), st.st_size, st.st_mtime_ns)
        return
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            log.warning("cannot list %s: %s", current, exc)
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith(".") and entry.path not in skip_set:
                        stack.append(entry.path)
                elif entry.is_file() and is_image_name(entry.name, exts):
                    st = entry.stat()
                    yield FoundFile(entry.path, st.st_size, st.st_mtime_ns)
            except OSError as exc:
                log.warning("cannot read %s: %s", entry.path, exc)


def is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
