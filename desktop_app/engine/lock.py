"""One process per data dir: an OS file lock, released by the OS if the process dies.

Chroma's embedded store and our catalog writer both assume a single writer process; a
second process gets a clear message at once instead of hanging or corrupting data.

On POSIX the lock is an ``flock`` on the data folder itself, not on a file inside it: a
lock file can be deleted while held (and a second process would then lock a new file
of the same name), a folder that holds the catalog cannot go while we use it. ``.lock``
still receives the holder's pid, for the message only. On Windows an open file cannot
be deleted, so the ``.lock`` file itself is locked.

Threads: the library takes it when it opens and releases it when it closes, on the same
thread; the lock belongs to the process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from desktop_app.engine.errors import DataDirLocked


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir
        self.path = data_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = _open_lock_target(self.folder, self.path)
        try:
            _lock(fd)
        except OSError:
            os.close(fd)
            raise DataDirLocked(
                f"the data folder {self.folder} is in use by another desktop-app "
                f"process (pid {self._holder()}). Close it, or use another --data-dir."
            ) from None
        self._fd = fd
        self._write_pid()

    def _holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "unknown"
        except OSError:
            return "unknown"

    def _write_pid(self) -> None:
        if sys.platform == "win32":  # the locked .lock file is the lock itself there
            return
        try:
            tmp = self.path.with_name(f".lock.{os.getpid()}")
            tmp.write_text(str(os.getpid()), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # the pid is only for the message; the lock is held either way

    def release(self) -> None:
        if self._fd is not None:
            try:
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows builds
    import msvcrt

    def _open_lock_target(folder: Path, path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT)

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _open_lock_target(folder: Path, path: Path) -> int:
        return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
