"""The catalog: a SQLite database that is the source of truth for the library.

It holds the library's folders, one row per file (path, size, mtime, content fingerprint,
size in pixels, status, error) and every embedding per distinct content and encoder, so
the vector index (Chroma) can always be rebuilt from it without re-embedding.

Threads: each thread gets its own connection (SQLite's rule); WAL lets searches read
while the single indexing thread writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    fingerprint TEXT,
    width INTEGER,
    height INTEGER,
    status TEXT NOT NULL,          -- 'ok' or 'failed'
    error TEXT,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_fingerprint ON files(fingerprint);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS vectors (
    encoder TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'full' or 'region'
    idx INTEGER NOT NULL,
    x INTEGER, y INTEGER, w INTEGER, h INTEGER,   -- region box in full-size pixels
    vector BLOB NOT NULL,          -- float32
    PRIMARY KEY (encoder, kind, fingerprint, idx)
);
CREATE INDEX IF NOT EXISTS vectors_fingerprint ON vectors(fingerprint);
CREATE TABLE IF NOT EXISTS features (
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,            -- e.g. 'keypoints'
    data BLOB NOT NULL,
    PRIMARY KEY (fingerprint, kind)
);
"""

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FileRow:
    path: str
    root: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    width: int | None
    height: int | None
    status: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class VectorRow:
    fingerprint: str
    kind: str
    idx: int
    box: Box | None
    vector: np.ndarray


_FILE_COLUMNS = "path, root, size, mtime_ns, fingerprint, width, height, status, error"


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.db.executescript(SCHEMA)  # executescript commits on its own
        self.db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
        )

    # -- connections -------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: a crash inside loses the whole block, never half of it."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- meta ----------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- roots ---------------------------------------------------------------------
    def add_root(self, path: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)", (path, time.time())
        )

    def roots(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM roots ORDER BY path")]

    # -- files ---------------------------------------------------------------------
    def file(self, path: str) -> FileRow | None:
        row = self.db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE path=?", (path,)).fetchone()
        return FileRow(*row) if row else None

    def files_in(self, folder: str) -> dict[str, FileRow]:
        """Files at or below ``folder``: a range scan on the path index."""
        prefix = folder.rstrip(os.sep) + os.sep
        upper = prefix[:-1] + chr(ord(os.sep) + 1)  # the first string after every prefix+...
        rows = self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE path=? OR (path>=? AND path<?)",
            (folder, prefix, upper),
        )
        return {r[0]: FileRow(*r) for r in rows}

    def put_files(self, rows: Iterable[FileRow], db: sqlite3.Connection | None = None) -> None:
        now = time.time()
        (db or self.db).executemany(
            f"INSERT OR REPLACE INTO files({_FILE_COLUMNS}, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.path,
                    r.root,
                    r.size,
                    r.mtime_ns,
                    r.fingerprint,
                    r.width,
                    r.height,
                    r.status,
                    r.error,
                    now,
                )
                for r in rows
            ],
        )

    def delete_files(self, paths: Sequence[str]) -> int:
        with self.transaction() as db:
            cur = db.executemany("DELETE FROM files WHERE path=?", [(p,) for p in paths])
            return cur.rowcount

    def paths_for(self, fingerprints: Sequence[str]) -> dict[str, list[FileRow]]:
        """Every indexed (status ok) file holding each content."""
        out: dict[str, list[FileRow]] = {}
        for chunk in _chunks(list(fingerprints), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE status='ok' AND fingerprint IN ({marks})"
                " ORDER BY path",
                chunk,
            )
            for r in rows:
                out.setdefault(r[4], []).append(FileRow(*r))
        return out

    def counts_by_root(self) -> dict[str, int]:
        rows = self.db.execute("SELECT root, COUNT(*) FROM files WHERE status='ok' GROUP BY root")
        return dict(rows.fetchall())

    def failures(self) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT path, error FROM files WHERE status='failed' ORDER BY path")
        return [(p, e or "unknown error") for p, e in rows]

    def counts(self) -> dict[str, int]:
        files, distinct, failed = self.db.execute(
            "SELECT SUM(status='ok'), COUNT(DISTINCT CASE WHEN status='ok' THEN fingerprint END),"
            " SUM(status='failed') FROM files"
        ).fetchone()
        return {"files": files or 0, "distinct": distinct or 0, "failed": failed or 0}

    # -- vectors -------------------------------------------------------------------
    def fingerprints_with_vectors(self, encoder: str, kind: str = "full") -> set[str]:
        rows = self.db.execute(
            "SELECT DISTINCT fingerprint FROM vectors WHERE encoder=? AND kind=?", (encoder, kind)
        )
        return {r[0] for r in rows}

    def fingerprints_with_feature(self, kind: str) -> set[str]:
        rows = self.db.execute("SELECT fingerprint FROM features WHERE kind=?", (kind,))
        return {r[0] for r in rows}

    def put_vectors(self, encoder: str, rows: Iterable[VectorRow], db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO vectors(encoder, fingerprint, kind, idx, x, y, w, h, vector)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    encoder,
                    r.fingerprint,
                    r.kind,
                    r.idx,
                    *(r.box or (None,) * 4),
                    np.asarray(r.vector, np.float32).tobytes(),
                )
                for r in rows
            ],
        )

    def vectors(
        self, encoder: str, kind: str = "full", fingerprints: Sequence[str] | None = None
    ) -> Iterator[VectorRow]:
        """Stored vectors, all of them or those of some contents."""
        sql = (
            "SELECT fingerprint, kind, idx, x, y, w, h, vector FROM vectors"
            " WHERE encoder=? AND kind=?"
        )
        if fingerprints is None:
            yield from (_vector_row(r) for r in self.db.execute(sql, (encoder, kind)))
            return
        for chunk in _chunks(list(fingerprints), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"{sql} AND fingerprint IN ({marks})", (encoder, kind, *chunk))
            yield from (_vector_row(r) for r in rows)

    def vector_counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.execute("SELECT encoder, kind, COUNT(*) FROM vectors GROUP BY encoder, kind")
        return {(e, k): n for e, k, n in rows}

    def collect_orphans(self) -> list[tuple[str, str, str, int]]:
        """Delete vectors and features of contents no file holds any more; returns the
        (encoder, kind, fingerprint, idx) deleted so the vector store can follow."""
        with self.transaction() as db:
            orphan = (
                "fingerprint NOT IN (SELECT fingerprint FROM files WHERE fingerprint IS NOT NULL)"
            )
            gone = db.execute(
                f"SELECT encoder, kind, fingerprint, idx FROM vectors WHERE {orphan}"
            ).fetchall()
            db.execute(f"DELETE FROM vectors WHERE {orphan}")
            db.execute(f"DELETE FROM features WHERE {orphan}")
        return [tuple(r) for r in gone]

    # -- cached per-content features (e.g. keypoints) --------------------------------
    def put_feature(self, fingerprint: str, kind: str, data: bytes, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT OR REPLACE INTO features(fingerprint, kind, data) VALUES (?, ?, ?)",
            (fingerprint, kind, data),
        )

    def features(self, kind: str, fingerprints: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for chunk in _chunks(list(fingerprints), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT fingerprint, data FROM features WHERE kind=? AND fingerprint IN ({marks})",
                (kind, *chunk),
            )
            out.update({fp: bytes(d) for fp, d in rows})
        return out


def _vector_row(r: tuple[Any, ...]) -> VectorRow:
    fp, kind, idx, x, y, w, h, blob = r
    box = (x, y, w, h) if x is not None else None
    return VectorRow(fp, kind, idx, box, np.frombuffer(blob, dtype=np.float32))


def _chunks(items: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
