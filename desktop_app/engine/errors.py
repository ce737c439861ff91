"""Typed errors the engine raises; the CLI and the UI turn them into plain messages."""

from __future__ import annotations

from pathlib import Path


class DesktopAppError(Exception):
    """Base class: the message is meant for the user as it is."""


class ImageLoadError(DesktopAppError):
    """A file could not be read as an image. Recorded per file, never stops a run."""

    def __init__(self, path: Path | str | None, reason: str) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path is not None else reason)


class EncoderUnavailable(DesktopAppError):
    """An encoder's code or weights cannot be loaded on this machine."""


class UnknownModel(DesktopAppError):
    """A model name that is neither the offline encoder nor ARCH:PRETRAINED."""


class TextSearchUnsupported(DesktopAppError):
    """The encoder has no text tower."""


class DataDirLocked(DesktopAppError):
    """Another process has the data directory open."""


class NotIndexed(DesktopAppError):
    """A path asked about is not in the index."""


class CatalogDamaged(DesktopAppError):
    """The catalog fails SQLite's integrity check; the message names the last backup."""

    def __init__(self, message: str, backup: Path | None = None) -> None:
        self.backup = backup
        super().__init__(message)


class CatalogTooNew(DesktopAppError):
    """The catalog was written by a newer version of the app, in a format it cannot read."""


class SettingsTooNew(DesktopAppError):
    """settings.json was written by a newer version of the app."""


class DiskFull(DesktopAppError):
    """A write failed for lack of space; what was written before it stays."""


class StoreDamaged(DesktopAppError):
    """The vector index failed and could not be rebuilt here and now."""


class ChromaNotLoaded(DesktopAppError):
    """Chroma's own code failed to import (a broken install, or two threads importing
    overlapping packages at once, which Python resolves with a half-initialised module):
    nothing is wrong with the index's files, so they are left as they are."""


class SearchCancelled(DesktopAppError):
    """A newer query superseded this search mid-stage: nothing to show, nothing wrong."""


class StoreBusy(DesktopAppError):
    """A search waited too long for the vector index being rebuilt; nothing is wrong
    with it (not :class:`StoreDamaged`, which asks for a repair): search again."""


class NotFound(DesktopAppError):
    """A path given to index is neither an existing folder or file nor a library folder."""


class DownloadCancelled(EncoderUnavailable):
    """The user cancelled a weights download; the offline encoder runs instead."""
