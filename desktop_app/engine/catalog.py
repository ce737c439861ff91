"""The catalog: a SQLite database that is the source of truth for the library.

It holds the library's folders, one row per file (path, size, mtime, content fingerprint,
size in pixels, EXIF capture time, status, error) and every embedding per distinct content
and encoder, so the vector index (Chroma) can always be rebuilt from it without re-embedding.

Paths are stored as bytes (``os.fsencode``): a file name that is not valid UTF-8 (a
surrogate-escaped ``str`` in Python) is kept losslessly instead of aborting a write.
The schema has a version that is read on open: an older catalog is upgraded by numbered
migrations, a newer one is refused (see ``MIGRATIONS``).

Threads: connections come from a small pool and are handed out per call (``_conn``), never
per thread, so threads that come and go (search pools) do not each leave a connection
open. The single indexing thread is the only writer (``transaction``); WAL lets searches
read meanwhile. Any thread may read.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from desktop_app.engine.errors import CatalogDamaged, CatalogTooNew, DiskFull
from desktop_app.engine.vector_ids import Box, parse_vector_id

log = logging.getLogger(__name__)

T = TypeVar("T")

# 1: paths as TEXT (valid UTF-8 only). 2: paths as BLOB (os.fsencode), any file name.
# 3: files.taken, the EXIF capture time (NULL: not read yet; the next scan reads it).
SCHEMA_VERSION = 3
IDLE_CONNECTIONS = 4  # kept open between calls; more may exist while busy, then close
BACKUPS_KEPT = 3
BACKUP_EVERY_S = 3600.0  # at most one backup an hour: a large catalog takes a while
FULL_CHECK_BYTES = 256 << 20  # above this, quick_check only the small tables at open

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
    indexed_at REAL NOT NULL,
    taken TEXT                     -- EXIF capture time, ISO; '' none; NULL not read yet
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
-- pairs of contents the user said are not duplicates (duplicates.py); fp_a < fp_b
CREATE TABLE IF NOT EXISTS not_duplicates (
    fp_a TEXT NOT NULL,
    fp_b TEXT NOT NULL,
    marked_at REAL NOT NULL,
    PRIMARY KEY (fp_a, fp_b)
);
"""


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
    # EXIF capture time "YYYY-MM-DDTHH:MM:SS" (imageio.taken_time); "" when the file has
    # none; None when not read yet (a row from before catalog format 3)
    taken: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def day(self) -> date:
        """The day the photo was taken (EXIF), else the day it was last modified (local)."""
        if self.taken:
            try:
                return date.fromisoformat(self.taken[:10])
            except ValueError:  # not ours (a server entry from a foreign client): ignore it
                pass
        return datetime.fromtimestamp(self.mtime_ns / 1e9).date()


@dataclass(frozen=True)
class VectorRow:
    fingerprint: str
    kind: str
    idx: int
    box: Box | None
    vector: np.ndarray


_FILE_COLUMNS = "path, root, size, mtime_ns, fingerprint, width, height, status, error, taken"


def encode_path(path: str) -> bytes:
    """A path as stored: its bytes on disk, whatever their encoding."""
    return os.fsencode(path)


def decode_path(value: bytes | str) -> str:
    """Inverse of :func:`encode_path` (text from a version-1 row passes through)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Paths from TEXT to BLOB: byte order equals code point order for UTF-8, so the
    range scans of ``files_in`` keep working."""
    db.execute("UPDATE files SET path=CAST(path AS BLOB), root=CAST(root AS BLOB)")
    db.execute("UPDATE roots SET path=CAST(path AS BLOB)")


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """The EXIF capture time; NULL in every existing row, so the next scan reads each
    file's header once (no re-embedding: the content is known)."""
    db.execute("ALTER TABLE files ADD COLUMN taken TEXT")


# MIGRATIONS[n] upgrades a version-n catalog to n + 1, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


class _Rows:
    """A finished query's rows (the connection has gone back to the pool)."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class _PooledDb:
    """``catalog.db``: each call borrows a pooled connection and gives it back, so
    callers on any thread leave nothing open behind them."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        with self._catalog._conn() as conn:
            cur = conn.execute(sql, params)
            return _Rows(cur.fetchall(), cur.rowcount)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _Rows:
        with self._catalog._conn() as conn:
            cur = conn.executemany(sql, seq)
            return _Rows([], cur.rowcount)


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._open = 0  # connections alive (idle or lent out)
        self._lock = threading.Lock()
        self._closed = False
        self.db = _PooledDb(self)
        self.backups = path.parent / "backups"
        try:
            with self._conn() as conn:
                self._check(conn)
                self._prepare_schema(conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._damaged(str(exc)) from exc
        except BaseException:
            self.close()
            raise

    # -- connections -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for one call or transaction (any thread)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self._open += 1
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                with self._lock:
                    self._open -= 1
                raise
        try:
            yield conn
        finally:
            if conn.in_transaction:  # an abandoned generator mid-read: never pool it dirty
                conn.rollback()
            with self._lock:
                keep = not self._closed and len(self._idle) < IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
                else:
                    self._open -= 1
            if not keep:
                conn.close()

    @property
    def open_connections(self) -> int:
        """Connections alive now, idle or lent out (bounded; the leak test reads it)."""
        with self._lock:
            return self._open

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: a crash inside loses the whole block, never half of it.
        Only the indexing thread (the single writer) opens transactions. A full disk
        becomes :class:`DiskFull`, with nothing written."""
        with self._conn() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if _is_disk_full(exc):
                    raise DiskFull(
                        f"the disk holding {self.path.parent} is full: nothing of the last "
                        "batch was written. Free some space and index again; it resumes "
                        "where it stopped."
                    ) from exc
                raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            conn.close()

    # -- schema, health and backups ------------------------------------------------------
    def _check(self, conn: sqlite3.Connection) -> None:
        """``PRAGMA quick_check``: damage found now gets a clear message, not a wrong
        answer or a traceback later. It reads every page, so on a large catalog (its
        vectors table) only the tables every command reads are checked at open; damage
        among the vectors surfaces as a DatabaseError on reading them, which the command
        line reports with the same advice (``damage_error``)."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if size <= FULL_CHECK_BYTES:
            checks = ["PRAGMA quick_check(5)"]
        else:
            have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            checks = [f"PRAGMA quick_check({t})" for t in ("meta", "roots", "files") if t in have]
        for sql in checks:
            rows = conn.execute(sql).fetchall()
            if [r[0] for r in rows] != ["ok"]:
                raise self._damaged("; ".join(str(r[0]) for r in rows))

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        """Create a new catalog, upgrade an older one, refuse a newer one."""
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        row = (
            conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if has_meta
            else None
        )
        if row is None:
            conn.executescript(SCHEMA)  # executescript commits on its own
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
            return
        try:
            version = int(row[0])
        except ValueError:
            raise self._damaged(f"unreadable schema version {row[0]!r}") from None
        if version > SCHEMA_VERSION:
            raise CatalogTooNew(
                f"the catalog {self.path} was written by a newer version of desktop-app "
                f"(catalog format {version}, this version reads up to {SCHEMA_VERSION}). "
                "Update desktop-app, or use another --data-dir."
            )
        if version < SCHEMA_VERSION:
            self._upgrade(conn, version)
        conn.executescript(SCHEMA)  # indexes added since; IF NOT EXISTS throughout

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        self.backup(reason=f"before-upgrade-v{version}", force=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            while version < SCHEMA_VERSION:
                log.info("upgrading the catalog from format %d to %d", version, version + 1)
                MIGRATIONS[version](conn)
                version += 1
            conn.execute("UPDATE meta SET value=? WHERE key='schema'", (str(version),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema") or 0)

    def _damaged(self, detail: str) -> CatalogDamaged:
        return damage_error(self.path, detail)

    def last_backup(self) -> Path | None:
        return last_backup(self.backups)

    def backup(self, *, reason: str = "", force: bool = False) -> Path | None:
        """Copy the catalog with SQLite's online backup API (consistent while readers
        run) into ``backups/``, keeping the newest ``BACKUPS_KEPT``. Without ``force``,
        at most one per ``BACKUP_EVERY_S``. Runs on the writer thread."""
        last = self.last_backup()
        if not force and last is not None and time.time() - last.stat().st_mtime < BACKUP_EVERY_S:
            return None
        self.backups.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
        name = f"catalog-{stamp}{'-' + reason if reason else ''}.sqlite3"
        target = self.backups / name
        tmp = target.with_suffix(".partial")
        try:
            with self._conn() as src:
                dst = sqlite3.connect(tmp)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            os.replace(tmp, target)
        except (OSError, sqlite3.Error) as exc:
            tmp.unlink(missing_ok=True)
            log.warning("catalog backup to %s failed: %s", target, exc)
            return None
        for old in sorted(self.backups.glob("catalog-*.sqlite3"))[:-BACKUPS_KEPT]:
            old.unlink(missing_ok=True)
        log.info("catalog backed up to %s", target)
        return target

    # -- meta ----------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- roots ---------------------------------------------------------------------
    def add_root(self, path: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)",
            (encode_path(path), time.time()),
        )

    def roots(self) -> list[str]:
        return [decode_path(r[0]) for r in self.db.execute("SELECT path FROM roots ORDER BY path")]

    def remove_roots(self, paths: Sequence[str]) -> None:
        """Drop folders from the library list (their files are handled by the caller)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM roots WHERE path=?", [(encode_path(p),) for p in paths])

    def remove_root(self, path: str) -> int:
        """Forget a folder and its files; returns how many files were dropped."""
        with self.transaction() as db:
            db.execute("DELETE FROM roots WHERE path=?", (encode_path(path),))
            cur = db.execute("DELETE FROM files WHERE root=?", (encode_path(path),))
            return cur.rowcount

    # -- files ---------------------------------------------------------------------
    def file(self, path: str) -> FileRow | None:
        row = self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE path=?", (encode_path(path),)
        ).fetchone()
        return _file_row(row) if row else None

    def files_under(self, root: str) -> dict[str, FileRow]:
        rows = self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE root=?", (encode_path(root),)
        )
        return {f.path: f for f in map(_file_row, rows)}

    def files_in(self, folder: str) -> dict[str, FileRow]:
        """Files at or below ``folder``: a range scan on the path index."""
        sep = os.fsencode(os.sep)
        prefix = encode_path(folder).rstrip(sep) + sep
        upper = prefix[:-1] + bytes([sep[0] + 1])  # the first value after every prefix+...
        rows = self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE path=? OR (path>=? AND path<?)",
            (encode_path(folder), prefix, upper),
        )
        return {f.path: f for f in map(_file_row, rows)}

    def put_files(self, rows: Iterable[FileRow], db: sqlite3.Connection) -> None:
        """Inside the writer's ``transaction``."""
        now = time.time()
        db.executemany(
            f"INSERT OR REPLACE INTO files({_FILE_COLUMNS}, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    encode_path(r.path),
                    encode_path(r.root),
                    r.size,
                    r.mtime_ns,
                    r.fingerprint,
                    r.width,
                    r.height,
                    r.status,
                    r.error,
                    r.taken,
                    now,
                )
                for r in rows
            ],
        )

    def delete_files(self, paths: Sequence[str]) -> int:
        with self.transaction() as db:
            cur = db.executemany(
                "DELETE FROM files WHERE path=?", [(encode_path(p),) for p in paths]
            )
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
                out.setdefault(r[4], []).append(_file_row(r))
        return out

    def counts_by_root(self) -> dict[str, int]:
        rows = self.db.execute("SELECT root, COUNT(*) FROM files WHERE status='ok' GROUP BY root")
        return {decode_path(r): n for r, n in rows}

    def failures(self) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT path, error FROM files WHERE status='failed' ORDER BY path")
        return [(decode_path(p), e or "unknown error") for p, e in rows]

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
        with self._conn() as conn:  # held while the caller iterates, returned after
            if fingerprints is None:
                yield from (_vector_row(r) for r in conn.execute(sql, (encoder, kind)))
                return
            for chunk in _chunks(list(fingerprints), 500):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"{sql} AND fingerprint IN ({marks})", (encoder, kind, *chunk))
                yield from (_vector_row(r) for r in rows)

    def region_boxes(self, encoder: str, ids: Sequence[str]) -> dict[str, Box]:
        """Boxes of region vectors by store id (``fingerprint:idx``; see
        ``vector_ids.vector_id``), for those this catalog holds. One primary-key lookup per
        id reads only the rows asked for (250 take 4 ms); selecting every region of the
        contents read nine times as many rows."""
        sql = (
            "SELECT x, y, w, h FROM vectors WHERE encoder=? AND kind=? AND fingerprint=? AND idx=?"
        )
        out: dict[str, Box] = {}
        with self._conn() as conn:
            for vid in ids:
                row = conn.execute(sql, (encoder, "region", *parse_vector_id(vid))).fetchone()
                if row is not None and row[0] is not None:
                    out[vid] = tuple(row)
        return out

    def vector_counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.execute("SELECT encoder, kind, COUNT(*) FROM vectors GROUP BY encoder, kind")
        return {(e, k): n for e, k, n in rows}

    def has_vectors(self, encoder: str, kind: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM vectors WHERE encoder=? AND kind=? LIMIT 1", (encoder, kind)
        ).fetchone()
        return row is not None

    def encoders(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT encoder FROM vectors")]

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

    # -- "not duplicates" marks (by content, so a moved file keeps its marks) ---------
    def mark_not_duplicates(self, pairs: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        rows = [(*sorted((a, b)), now) for a, b in pairs if a != b]
        self.db.executemany(
            "INSERT OR IGNORE INTO not_duplicates(fp_a, fp_b, marked_at) VALUES (?, ?, ?)", rows
        )

    def unmark_not_duplicates(self, pairs: Iterable[tuple[str, str]]) -> None:
        rows = [tuple(sorted((a, b))) for a, b in pairs]
        self.db.executemany("DELETE FROM not_duplicates WHERE fp_a=? AND fp_b=?", rows)

    def not_duplicate_pairs(self) -> set[tuple[str, str]]:
        """Every marked pair, each as (smaller, larger) fingerprint."""
        return {(a, b) for a, b in self.db.execute("SELECT fp_a, fp_b FROM not_duplicates")}

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


def last_backup(backups: Path) -> Path | None:
    found = sorted(backups.glob("catalog-*.sqlite3")) if backups.is_dir() else []
    return found[-1] if found else None


def damage_error(path: Path, detail: str) -> CatalogDamaged:
    """The message for a damaged catalog at ``path``: what, and what to do about it."""
    detail = " ".join(detail.split())[:300]  # quick_check's report spans lines
    last = last_backup(path.parent / "backups")
    if last is not None:
        how = (
            f"The last good backup is {last}: close desktop-app and copy it over "
            f"{path} (keep the damaged file aside)."
        )
    else:
        how = (
            f"There is no backup in {path.parent / 'backups'}. Move {path} aside and index "
            "your folders again."
        )
    return CatalogDamaged(f"the catalog {path} is damaged ({detail}). {how}", last)


def _file_row(r: Sequence[Any]) -> FileRow:
    return FileRow(decode_path(r[0]), decode_path(r[1]), *r[2:])


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)
    return False


def _vector_row(r: tuple[Any, ...]) -> VectorRow:
    fp, kind, idx, x, y, w, h, blob = r
    box = (x, y, w, h) if x is not None else None
    return VectorRow(fp, kind, idx, box, np.frombuffer(blob, dtype=np.float32))


def _chunks(items: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
