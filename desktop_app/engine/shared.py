"""A library shared through a Chroma server: what still needs uploading, the upload, and
reading what other machines indexed.

The local catalog stays the source of truth for what this machine indexed. SQLite
triggers put an "unsynced" mark on every content whose vectors or features change and
on every file row that changes, in the same transaction as the change itself, so a crash
or a server that is down can never lose one. :class:`Uploader` turns marks into server
writes and clears them only after the server has the data; while the server cannot be
reached it pauses (with a growing back-off) and the indexer carries on locally.

Order matters for the shared data: file entries go up before contents, and a content
this catalog no longer holds is removed from the server only when no machine's file
entry refers to it any more.

Threads: the uploader runs on the indexing thread (the only writer) and stops between
rounds when the indexing job's cancel event is set (Cancel, or quitting): the marks stay.
:class:`SharedView` is used by search threads and only reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from desktop_app.engine.catalog import Catalog, FileRow, VectorRow
from desktop_app.engine.remote import RemoteVectorStore, StoreUnavailable
from desktop_app.engine.vector_ids import Box, stored_key, vector_id, vector_metadata

log = logging.getLogger(__name__)

SYNCED_URL = "store_synced_url"  # catalog meta: the server the marks are relative to
UPLOAD_CHUNK = 64  # contents (≤ 10 vectors and ~30 KB of features each) per round
BACKOFF_S = (2.0, 5.0, 15.0, 30.0, 60.0)

UNSYNCED_SCHEMA = """
CREATE TABLE IF NOT EXISTS unsynced (
    what TEXT NOT NULL,            -- 'content' (a fingerprint) or 'file' (a path)
    key NOT NULL,
    PRIMARY KEY (what, key)
);
"""
_MARK = "INSERT OR IGNORE INTO unsynced(what, key) VALUES"
TRIGGERS = {
    f"unsynced_{table}_{event[:3].lower()}": (
        f"AFTER {event} ON {table} BEGIN {_MARK} ('{what}', {row}.{column}); END"
    )
    for table, what, column in (
        ("vectors", "content", "fingerprint"),
        ("features", "content", "fingerprint"),
        ("files", "file", "path"),
    )
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))
}


def machine_name(configured: str = "") -> str:
    """The name other machines see this one by: the setting, else the host name."""
    return configured.strip() or socket.gethostname() or "unknown"


def file_entry_id(host: str, path: str) -> str:
    return hashlib.blake2b(f"{host}\0{path}".encode(), digest_size=16).hexdigest()


def _text(key: Any) -> str:
    return os.fsdecode(key) if isinstance(key, bytes) else str(key)


# -- marks ---------------------------------------------------------------------------------
def track_changes(catalog: Catalog, url: str) -> None:
    """Server mode: mark changes from now on. A catalog not yet synced to this server
    (first use, or used with the embedded store since) has everything marked."""
    with catalog.transaction() as db:
        db.execute(UNSYNCED_SCHEMA)
        for name, body in TRIGGERS.items():
            db.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
        if catalog_synced_url(catalog, db) != url:
            _mark_everything(db)
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (SYNCED_URL, url))


def stop_tracking(catalog: Catalog) -> None:
    """Embedded mode: no marks; the next server will need everything again."""
    with catalog.transaction() as db:
        for name in TRIGGERS:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        db.execute("DELETE FROM meta WHERE key=?", (SYNCED_URL,))
        db.execute("DROP TABLE IF EXISTS unsynced")


def mark_everything(catalog: Catalog) -> None:
    with catalog.transaction() as db:
        db.execute(UNSYNCED_SCHEMA)
        _mark_everything(db)


def _mark_everything(db: Any) -> None:
    db.execute(f"{_MARK[:-6]} SELECT DISTINCT 'content', fingerprint FROM vectors")
    db.execute(f"{_MARK[:-6]} SELECT DISTINCT 'content', fingerprint FROM features")
    db.execute(f"{_MARK[:-6]} SELECT 'file', path FROM files")


def catalog_synced_url(catalog: Catalog, db: Any = None) -> str | None:
    row = (db or catalog.db).execute("SELECT value FROM meta WHERE key=?", (SYNCED_URL,))
    got = row.fetchone()
    return got[0] if got else None


def unsynced_count(catalog: Catalog) -> int:
    try:
        return int(catalog.db.execute("SELECT COUNT(*) FROM unsynced").fetchone()[0])
    except Exception:  # no table: embedded mode
        return 0


# -- the upload ------------------------------------------------------------------------------
@dataclass
class UploadStats:
    contents: int = 0
    vectors: int = 0
    files: int = 0
    removed_files: int = 0
    removed_contents: int = 0
    by_encoder: dict[str, int] = field(default_factory=dict)


class Uploader:
    """Pushes marked contents and files to the server; owned by the indexing thread."""

    def __init__(self, catalog: Catalog, store: RemoteVectorStore, host: str) -> None:
        self.catalog = catalog
        self.store = store
        self.host = host
        self.error: str | None = None  # why the last attempt failed, while it does
        self._failures = 0
        self._next_try = 0.0
        self.stats = UploadStats()
        self._encoders: list[str] = []

    @property
    def paused(self) -> bool:
        return self.error is not None and time.monotonic() < self._next_try

    def step(self, max_rounds: int | None = 4, cancel: threading.Event | None = None) -> None:
        """Upload some marks unless paused; never raises for an unreachable server
        (called between indexing batches: indexing goes on locally meanwhile)."""
        if self.paused:
            return
        try:
            self.upload(max_rounds, cancel)
        except StoreUnavailable as exc:
            self._failed(exc)

    def drain(self, cancel: threading.Event | None = None) -> bool:
        """Upload every mark; False (and ``error`` set) when the server is unreachable.
        ``cancel`` stops it between rounds: what is not up yet stays marked."""
        try:
            self.upload(None, cancel)
        except StoreUnavailable as exc:
            self._failed(exc)
            return False
        return True

    def _failed(self, exc: StoreUnavailable) -> None:
        if self.error is None:
            log.warning("%s; indexing goes on locally, uploads resume when it answers", exc)
        self.error = str(exc)
        self._next_try = time.monotonic() + BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
        self._failures += 1

    def upload(
        self, max_rounds: int | None = None, cancel: threading.Event | None = None
    ) -> UploadStats:
        """Marks to the server, files first (see the module docstring); raises
        :class:`StoreUnavailable`. A mark is cleared only after its write succeeded.
        ``cancel`` (the indexing job's: set by Cancel or at quit) is checked before each
        round, so a stop waits at most for the round in flight (each HTTP call is bounded
        by the store's request timeout); the marks not uploaded stay for the next run."""
        rounds = 0
        # asked once per upload: a scan of every vector row, too slow per chunk
        self._encoders = self.catalog.encoders()
        for what in ("file", "content"):
            while max_rounds is None or rounds < max_rounds:
                if cancel is not None and cancel.is_set():
                    return self.stats
                keys = [
                    r[0]
                    for r in self.catalog.db.execute(
                        "SELECT key FROM unsynced WHERE what=? LIMIT ?", (what, UPLOAD_CHUNK)
                    )
                ]
                if not keys:
                    break
                if what == "file":
                    self._upload_files(keys)
                else:
                    self._upload_contents(keys)
                with self.catalog.transaction() as db:
                    db.executemany(
                        "DELETE FROM unsynced WHERE what=? AND key=?", [(what, k) for k in keys]
                    )
                rounds += 1
        if self.error is not None:
            log.info("the Chroma server at %s answers again", self.store.url)
        self.error, self._failures = None, 0
        return self.stats

    def _upload_files(self, keys: Sequence[Any]) -> None:
        put: list[tuple[str, dict[str, Any]]] = []
        gone: list[str] = []
        for key in keys:
            path = _text(key)
            row = self.catalog.file(path)
            entry_id = file_entry_id(self.host, path)
            if row is None or not row.ok or not row.fingerprint:
                gone.append(entry_id)
            else:
                put.append((entry_id, self._file_meta(row)))
        if put:
            self.store.put_files(put)
        if gone:
            self.store.delete_files(gone)
        self.stats.files += len(put)
        self.stats.removed_files += len(gone)

    def _file_meta(self, row: FileRow) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "fp": row.fingerprint,
            "host": self.host,
            "root": _text(row.root),
            "path": _text(row.path),
            "size": int(row.size),
            "mtime_ns": str(row.mtime_ns),  # past 2**53: a float would round it
        }
        if row.width and row.height:
            meta.update(width=int(row.width), height=int(row.height))
        if row.taken is not None:
            meta["taken"] = row.taken
        return meta

    def _upload_contents(self, keys: Sequence[Any]) -> None:
        fps = [_text(k) for k in keys]
        held: set[str] = set()
        for encoder in self._encoders:
            for kind in ("full", "region"):
                rows = list(self.catalog.vectors(encoder, kind, fps))
                if not rows:
                    continue
                held.update(r.fingerprint for r in rows)
                self.store.upsert(
                    encoder,
                    [vector_id(r.fingerprint, r.kind, r.idx) for r in rows],
                    np.stack([r.vector for r in rows]),
                    [vector_metadata(r.fingerprint, r.box) for r in rows],
                    kind=kind,
                )
                self.stats.vectors += len(rows)
                self.stats.by_encoder[encoder] = self.stats.by_encoder.get(encoder, 0) + len(rows)
        feats: dict[str, dict[str, bytes]] = {}
        for kind in self._feature_kinds(fps):
            for fp, data in self.catalog.features(kind, fps).items():
                feats.setdefault(fp, {})[kind] = data
                held.add(fp)
        if feats:
            self.store.put_features(list(feats.items()))
        self.stats.contents += len(held)
        self._remove_unreferenced([fp for fp in fps if fp not in held])

    def _feature_kinds(self, fps: Sequence[str]) -> list[str]:
        marks = ",".join("?" * len(fps))
        rows = self.catalog.db.execute(
            f"SELECT DISTINCT kind FROM features WHERE fingerprint IN ({marks})", list(fps)
        )
        return [r[0] for r in rows]

    def _remove_unreferenced(self, fps: Sequence[str]) -> None:
        """Contents this catalog dropped: off the server unless a file still holds them
        there (another machine's, or one of ours not yet uploaded)."""
        if not fps:
            return
        referenced = {str(e["fp"]) for e in self.store.files_for(fps)}
        doomed = [fp for fp in fps if fp not in referenced]
        self.store.delete_contents(doomed)
        self.stats.removed_contents += len(doomed)


# -- reading what every machine indexed ------------------------------------------------------
@dataclass(frozen=True)
class OriginRow(FileRow):
    """A file another machine indexed (``host``), as the search expands results."""

    host: str | None = None


class SharedView:
    """What the search reads (files holding a content, stored vectors, keypoints and
    colour copies): this catalog first, the server for what only other machines have.
    It has the catalog's reading methods, so the search code takes either."""

    def __init__(self, catalog: Catalog, store: RemoteVectorStore, host: str) -> None:
        self.catalog = catalog
        self.store = store
        self.host = host

    def paths_for(self, fingerprints: Sequence[str]) -> dict[str, list[FileRow]]:
        """Files here (as the catalog has them) and other machines' files; a file of
        another machine at a path this machine has too (a share mounted the same way
        on both) is listed once, as ours."""
        out: dict[str, list[FileRow]] = {
            fp: list(rows) for fp, rows in self.catalog.paths_for(fingerprints).items()
        }
        seen = {(fp, r.path) for fp, rows in out.items() for r in rows}
        for e in self.store.files_for(fingerprints):
            fp, path, host = str(e["fp"]), str(e["path"]), str(e.get("host", ""))
            if (fp, path) in seen:
                continue
            if host == self.host and not os.path.exists(path):
                continue  # ours from an older data dir, and gone
            seen.add((fp, path))
            out.setdefault(fp, []).append(_origin_row(e, None if host == self.host else host))
        for rows in out.values():
            rows.sort(key=lambda r: r.path)
        return out

    def features(self, kind: str, fingerprints: Sequence[str]) -> dict[str, bytes]:
        out = self.catalog.features(kind, fingerprints)
        missing = [fp for fp in fingerprints if fp not in out]
        if missing:
            out.update(self.store.features(kind, missing))
        return out

    def vectors(
        self, encoder: str, kind: str = "full", fingerprints: Sequence[str] | None = None
    ) -> list[VectorRow]:
        rows = list(self.catalog.vectors(encoder, kind, fingerprints))
        if fingerprints is None:
            return rows
        have = {r.fingerprint for r in rows}
        missing = [fp for fp in fingerprints if fp not in have]
        if missing:
            for vid, meta, vec in self.store.get_vectors(encoder, kind, missing):
                fp, idx, box = stored_key(vid, meta)
                rows.append(VectorRow(fp, kind, idx, box, vec))
        return rows

    def region_boxes(self, encoder: str, ids: Sequence[str]) -> dict[str, Box]:
        """Boxes of region vectors by store id: the server's, whose vectors the search
        scored (machines with other region settings write other boxes under one id;
        the server keeps the last writer's vector and box), then the catalog's for any
        the server lacks."""
        out = self.store.region_boxes(encoder, ids)
        missing = [vid for vid in ids if vid not in out]
        if missing:
            out.update(self.catalog.region_boxes(encoder, missing))
        return out

    def file(self, path: str) -> FileRow | None:
        """A file by path: ours from the catalog, else another machine's entry."""
        row = self.catalog.file(path)
        if row is not None:
            return row
        for e in self.store.files_at(path):
            host = str(e.get("host", ""))
            return _origin_row(e, None if host == self.host else host)
        return None


def file_fields(e: dict[str, Any]) -> dict[str, Any]:
    """The ``FileRow`` fields of a server file entry (the inverse of ``_file_meta``)."""
    path = str(e["path"])
    return {
        "path": path,
        "root": str(e.get("root") or os.path.dirname(path)),
        "size": int(e.get("size", 0)),
        "mtime_ns": int(e.get("mtime_ns", 0)),
        "fingerprint": str(e["fp"]),
        "width": int(e["width"]) if "width" in e else None,
        "height": int(e["height"]) if "height" in e else None,
        "status": "ok",
        "error": None,
        # an entry from a client older than the capture time: unread (None)
        "taken": str(e["taken"]) if "taken" in e else None,
    }


def _origin_row(e: dict[str, Any], host: str | None) -> OriginRow:
    return OriginRow(**file_fields(e), host=host)
