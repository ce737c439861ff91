"""Finding the image files under the library's folders.

A folder that cannot be listed is not an empty folder: ``scan`` reports it (``unlisted``)
so the indexer keeps what it held instead of treating its files as deleted. A name that
looks like an image but is not a regular file (a FIFO, a device, a socket, a symlink
loop) is reported as a :class:`FoundFile` with an ``error``, so it is listed as a failure
and never opened. Runs on the indexing thread.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundFile:
    path: str
    size: int
    mtime_ns: int
    error: str | None = None  # set when the entry cannot be an image file


def is_image_name(name: str, extensions: frozenset[str]) -> bool:
    # Dot-files include macOS "._x.jpg" resource forks, which are not images.
    if name.startswith("."):
        return False
    return name.rpartition(".")[2].lower() in extensions


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this mode cannot be read as an image, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "a special file"
    )
    return f"not a regular file ({kind}); not read"


def _found(path: str, follow: bool = True) -> FoundFile:
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError as exc:
        reason = (
            "a symbolic link loop"
            if exc.errno == errno.ELOOP
            else "a broken symbolic link"
            if isinstance(exc, FileNotFoundError)
            else f"cannot read file ({exc.strerror or exc})"
        )
        return FoundFile(path, -1, 0, reason)
    return FoundFile(path, st.st_size, st.st_mtime_ns, not_regular_reason(st.st_mode))


def scan(
    folder: Path,
    extensions: Iterable[str],
    skip: Iterable[Path] = (),
    unlisted: list[str] | None = None,
) -> Iterator[FoundFile]:
    """Image files under ``folder`` (or ``folder`` itself if it is a file), recursively.

    Hidden folders are skipped and symlinked folders are not followed (no loops). A
    folder that cannot be listed is logged and appended to ``unlisted``.
    """
    exts = frozenset(e.lower().lstrip(".") for e in extensions)
    skip_set = {str(p) for p in skip}
    if not folder.is_dir():
        if is_image_name(folder.name, exts) and os.path.lexists(folder):
            yield _found(str(folder))
        return
    stack = [str(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as exc:
            log.warning("cannot list %s: %s (its entries are kept)", current, exc)
            if unlisted is not None:
                unlisted.append(current)
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith(".") and entry.path not in skip_set:
                        stack.append(entry.path)
                elif is_image_name(entry.name, exts):
                    yield _found(entry.path)
            except OSError as exc:
                log.warning("cannot read %s: %s", entry.path, exc)


def is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
