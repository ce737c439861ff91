"""What a library holds, as one immutable value: ``Library.status()`` returns it.

It is built on whichever thread asks (the CLI's, or the index worker after every job)
and handed to the GUI thread through a signal; frozen, so no side can change what the
other reads. ``to_json()`` is the stable ``desktop-app status --json`` interface: its
keys and their order do not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RootStatus:
    """A watched folder: reachable now or not (an unplugged drive), and its images."""

    path: str
    online: bool
    files: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "online": self.online, "files": self.files}


@dataclass(frozen=True)
class Failure:
    """A file that could not be indexed, and why, in words for the user."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class LibraryStatus:
    files: int  # indexed files
    distinct: int  # distinct contents among them (copies count once)
    failed: int  # files that could not be indexed
    encoder: str  # the encoder id the vectors belong to
    encoder_label: str  # for people: "EfficientNet-Lite0 on CPU"
    device: str
    model_warning: str | None  # why the chosen encoder was replaced, if it was
    vectors: Mapping[str, int]  # vector kind ("full", "region") -> how many
    data_dir: str
    store_bytes: int  # the data folder's size on disk
    roots: tuple[RootStatus, ...]
    failures: tuple[Failure, ...]
    store_health: str  # the vector index: "ok", or what is wrong and what happens next
    catalog_backup: str | None  # the newest catalog backup file, if there is one
    # where the vectors live: {"url": None} for the embedded store; for a Chroma server
    # its url, this machine's name, whether it answers and what waits for upload
    store: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "distinct": self.distinct,
            "failed": self.failed,
            "encoder": self.encoder,
            "encoder_label": self.encoder_label,
            "device": self.device,
            "model_warning": self.model_warning,
            "vectors": dict(self.vectors),
            "data_dir": self.data_dir,
            "store_bytes": self.store_bytes,
            "roots": [r.to_json() for r in self.roots],
            "failures": [f.to_json() for f in self.failures],
            "store_health": self.store_health,
            "catalog_backup": self.catalog_backup,
            "store": dict(self.store) if self.store is not None else None,
        }
