"""The vector index: Chroma, one collection per encoder and vector kind.

It is derived data. The catalog holds every vector, so this index can be deleted and
rebuilt (``Library.sync_store``) at any time without re-embedding. It is an embedded
``PersistentClient`` in the data dir.

Every Chroma failure leaves this module as a typed error: :class:`DiskFull` when a write
found no space, :class:`StoreDamaged` otherwise (the library then sets the store aside
and rebuilds it from the catalog). Threads: the indexing thread is the only writer and
the only one that creates a collection (:meth:`VectorStore.collection`); searches query
from any thread through :meth:`VectorStore.existing`, which never creates one, so a
missing collection reads as empty. The write-chunk size follows
:func:`desktop_app.engine.headless.is_headless`, which only the command line sets.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from desktop_app.engine.errors import (
    ChromaNotLoaded,
    DesktopAppError,
    DiskFull,
    StoreBusy,
    StoreDamaged,
)
from desktop_app.engine.headless import is_headless

log = logging.getLogger(__name__)

# Vectors per Chroma call. Chroma holds the GIL while it writes, and a call's time grows
# with its size: in a process with a window, 16 keeps each hold near 40 ms (see
# VectorStore.upsert). A process without one (the command line) writes 160 at a time:
# each call also has a fixed cost, and 1280-dimension vectors took 1.17 ms of CPU each at
# 160 against 1.87 ms at 16 (bench: 1,600 vectors, 3 rounds).
WRITE_CHUNK = 16
HEADLESS_WRITE_CHUNK = 160
WRITE_PAUSE_S = 0.002
# how long a search waits for a store being rebuilt before it says so (StoreBusy)
READ_WAIT_S = 120.0


@dataclass(frozen=True)
class Hit:
    """A neighbour: its store id (``vector_ids.vector_id``) and similarity. Metadata is
    not fetched with it: that doubled a region query's time (600 hits, 13.5 → 34.5 ms);
    a search reads the few boxes it needs afterwards (``ContentReader.region_boxes``:
    the catalog's, or a team server's)."""

    id: str
    score: float  # cosine similarity, 1 = identical


def collection_name(encoder_id: str, kind: str) -> str:
    """Chroma names allow [a-zA-Z0-9._-], 3-512 chars; encoder ids hold ':' and '/'."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", encoder_id).strip("-._")[:40]
    digest = hashlib.blake2b(encoder_id.encode(), digest_size=4).hexdigest()
    return f"{kind}-{slug}-{digest}"


def forget_system(path: Path) -> None:
    """Chroma caches one system per path in the process and registers it before it
    starts: a store that failed to open would stay cached, broken, and the rebuilt one
    at the same path would get it back. Drop it (private API, guarded)."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        system = SharedSystemClient._identifier_to_system.pop(str(path), None)
        SharedSystemClient._identifier_to_refcount.pop(str(path), None)
        if system is not None:
            system.stop()
    except Exception:  # a newer Chroma laid out differently: nothing more to do
        log.debug("could not drop Chroma's cached system for %s", path, exc_info=True)


# Chroma's HNSW segment header (header.bin, hnswlib's fields after an int32 format
# version): offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData, maxlevel, enterpoint_node, maxM, maxM0, M, mult, ef_construction.
_HNSW_HEADER = struct.Struct("<iQQQQQQiIQQQdQ")


def hnsw_files_problem(chroma_dir: Path) -> str | None:
    """What is wrong with the HNSW files under ``chroma_dir``, checked without loading
    them, or None. hnswlib trusts these files: a truncated ``data_level0.bin`` can crash
    the whole process (a segfault, nothing to catch) when Chroma loads it, so the sizes
    the header promises are checked first. A header of a layout we do not know (another
    Chroma version) is left to Chroma."""
    for header in sorted(chroma_dir.glob("*/header.bin")):
        folder = header.parent
        try:
            raw = header.read_bytes()
            if len(raw) != _HNSW_HEADER.size:
                continue
            (
                version,
                _off0,
                max_el,
                cur,
                per_el,
                label_off,
                off_data,
                _lvl,
                _ep,
                max_m,
                max_m0,
                m,
                _mult,
                _efc,
            ) = _HNSW_HEADER.unpack(raw)
            if not 1 <= version <= 16:
                return f"{header} is damaged (format {version})"
            if version != 1:
                continue
            sane = (
                0 <= cur <= max_el < 1 << 40
                and 0 < per_el < 1 << 24
                and off_data < label_off
                and label_off + 8 <= per_el
                and 1 <= m <= 4096
                and max_m0 >= max_m
            )
            if not sane:
                return f"{header} is damaged (impossible values)"
            data = (folder / "data_level0.bin").stat().st_size
            if data < cur * per_el:
                return f"{folder / 'data_level0.bin'} is truncated ({data} of {cur * per_el} bytes)"
            length = folder / "length.bin"
            if length.exists() and length.stat().st_size < cur * 4:
                return f"{length} is truncated"
        except OSError as exc:
            return f"{folder} cannot be read ({exc.strerror or exc})"
    return None


def hnsw_elements(chroma_dir: Path) -> int:
    """How many elements the HNSW indexes under ``chroma_dir`` hold, deleted ones
    included, as their headers last saved them (Chroma saves them every
    ``sync_threshold`` writes). hnswlib only *marks* a deleted element and Chroma gives
    every new id a new slot, never a freed one, so this only grows while photos come
    and go: in memory as well as on disk (see :meth:`VectorStore.live_vectors` and
    ``Library.compact_store``). Headers of a layout we do not know count as 0."""
    total = 0
    for header in chroma_dir.glob("*/header.bin"):
        try:
            raw = header.read_bytes()
        except OSError:
            continue
        if len(raw) == _HNSW_HEADER.size:
            fields = _HNSW_HEADER.unpack(raw)
            if fields[0] == 1:  # the format version read by hnsw_files_problem too
                total += int(fields[3])  # cur_element_count
    return total


class ReadableStore(Protocol):
    """What searches read: a :class:`VectorStore` or a :class:`StoreReader`."""

    def count(self, encoder_id: str, kind: str = "full") -> int: ...

    def query(
        self, encoder_id: str, vectors: np.ndarray, k: int, kind: str = "full"
    ) -> list[list[Hit]]: ...


class StoreReader:
    """The store as searches see it (any thread). The library *publishes* a store here
    only once it is complete (opened, checked and, after a rebuild, refilled from the
    catalog), so a search never gets part of the results. Each call holds the published
    store while it runs. To rebuild, the writer retires the published store (no new
    call takes it), waits for the calls under way to end and the store to close, then
    rebuilds and publishes the new one: a call that comes meanwhile waits here, on a
    condition, for that (bounded by ``READ_WAIT_S``: then :class:`StoreBusy`)."""

    def __init__(self, open_store: Callable[[], object]) -> None:
        # opens a deferred store, which publishes it (the first caller; others wait)
        self._open = open_store
        self._published: VectorStore | None = None
        self._failure: str | None = None  # a rebuild failed: why (until one succeeds)
        self._changed = threading.Condition()

    @property
    def published(self) -> VectorStore | None:
        return self._published

    def publish(self, store: VectorStore) -> None:
        """Writer side: searches read ``store`` from now on (it is complete)."""
        with self._changed:
            self._published, self._failure = store, None
            self._changed.notify_all()

    def publish_failure(self, why: str) -> None:
        """Writer side: the rebuild failed; calls waiting for it get ``why`` as
        :class:`StoreDamaged` (which marks the store for the next repair) at once."""
        with self._changed:
            self._failure = why
            self._changed.notify_all()

    def _acquire(self) -> VectorStore:
        if self._published is None:
            self._open()  # a deferred store: opened here, or by the thread already at it
        deadline = time.monotonic() + READ_WAIT_S
        with self._changed:
            while True:
                store = self._published
                if store is not None and store.acquire():
                    return store
                if self._failure is not None:
                    raise StoreDamaged(self._failure)
                # none yet, or retired: the writer publishes its successor once complete
                left = max(deadline - time.monotonic(), 0.0)
                if not self._changed.wait_for(functools.partial(self._moved, store), left):
                    raise StoreBusy(
                        "the vector index is being rebuilt from the catalog and is not "
                        "ready yet; search again in a moment"
                    )

    def _moved(self, seen: VectorStore | None) -> bool:
        """Whether the writer published another store than ``seen``, or failed to."""
        return self._published is not seen or self._failure is not None

    @contextmanager
    def _held(self) -> Iterator[VectorStore]:
        store = self._acquire()
        try:
            yield store
        finally:
            store.release()

    def count(self, encoder_id: str, kind: str = "full") -> int:
        with self._held() as store:
            return store.count(encoder_id, kind)

    def ids(self, encoder_id: str, kind: str = "full") -> set[str]:
        with self._held() as store:
            return store.ids(encoder_id, kind)

    def query(
        self, encoder_id: str, vectors: np.ndarray, k: int, kind: str = "full"
    ) -> list[list[Hit]]:
        with self._held() as store:
            return store.query(encoder_id, vectors, k, kind)


def existing_collection(client: Any, cache: dict[str, Any], name: str) -> Any | None:
    """The collection ``name`` from ``cache`` or the client (then cached), or None when it
    does not exist: reads never create one (``get_collection``, not get-or-create), and an
    absence is not cached, since a writer may create it at any moment."""
    col = cache.get(name)
    if col is None:
        try:
            col = client.get_collection(name, embedding_function=None)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        cache[name] = col
    return col


def is_not_found(exc: BaseException) -> bool:
    """Whether Chroma's error says a collection does not exist (``NotFoundError`` in
    Chroma 1.x, a ``ValueError`` with these words in older versions and over HTTP)."""
    return type(exc).__name__ == "NotFoundError" or "does not exist" in str(exc)


def failed_import(exc: BaseException) -> bool:
    """Whether ``exc`` is code failing to import, not a file failing to read: an
    ``ImportError``, or the ``AttributeError`` Python raises when an attribute of a
    half-initialised module is read (two threads importing overlapping packages at once:
    Python breaks that deadlock by handing one of them such a module)."""
    return isinstance(exc, ImportError) or (
        isinstance(exc, AttributeError) and "partially initialized module" in str(exc)
    )


def chroma_not_loaded(exc: BaseException) -> ChromaNotLoaded:
    log.error("Chroma failed to load", exc_info=exc)
    return ChromaNotLoaded(
        f"Chroma, which keeps the vector index, failed to load ({type(exc).__name__}: "
        f"{str(exc)[:300]}). The index's files are untouched. Start the app (or run the "
        "command) again; if this happens every time, reinstall it."
    )


@contextmanager
def _guard(what: str) -> Iterator[None]:
    """Chroma's many exception kinds (sqlite, HNSW, Rust bindings) as our two, and a
    failed import of its own code (it imports lazily) as :class:`ChromaNotLoaded`."""
    try:
        yield
    except DesktopAppError:
        raise
    except Exception as exc:
        if failed_import(exc):
            raise chroma_not_loaded(exc) from exc
        text = f"{type(exc).__name__}: {exc}"
        full = ("disk is full", "No space left", "os error 28")
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or any(f in text for f in full):
            raise DiskFull(
                "the disk holding the vector index is full: the catalog kept everything "
                "indexed so far. Free some space and index again; it resumes where it stopped."
            ) from exc
        raise StoreDamaged(f"the vector index failed to {what} ({text[:300]})") from exc


class VectorStore:
    # True for a server several clients share (``remote.RemoteVectorStore``): its
    # contents are not this catalog's alone, so nothing may be deleted just because this
    # catalog lacks it.
    shared = False

    def __init__(self, client: Any) -> None:
        self.client = client
        self.max_batch = int(client.get_max_batch_size())
        self._collections: dict[str, Any] = {}
        self._init_lifetime()

    def _init_lifetime(self) -> None:
        # readers under way (StoreReader) and whether the writer replaced this store:
        # a retired store closes when its last reader is done, never under one. The
        # condition also wakes a writer waiting for that close (wait_closed).
        self._use = threading.Condition()
        self._readers = 0
        self._retired = False
        self._detached: Any = None  # our Chroma system, once taken out of Chroma's cache
        self.closed = False  # set when close() starts: nothing may use it from then on
        self._stopped = False  # set when close() is done: its files are no longer open

    # -- lifetime: readers hold the store, the writer retires it ------------------------
    def acquire(self) -> bool:
        """A reader starts a call; False once retired (read the current store again)."""
        with self._use:
            if self._retired:
                return False
            self._readers += 1
            return True

    def release(self) -> None:
        with self._use:
            self._readers -= 1
            last = self._retired and self._readers == 0
        if last:
            self.close()

    def retire(self) -> None:
        """The writer is replacing this store: no reader takes it any more; it closes
        now if no reader holds it, else when the last one releases it."""
        with self._use:
            self._retired = True
            idle = self._readers == 0
        if idle:
            self.close()

    def wait_closed(self, timeout: float) -> bool:
        """Writer side, after :meth:`retire`: wait (bounded) for the readers under way
        to finish and the store to close. False when some still hold it."""
        with self._use:
            return self._use.wait_for(lambda: self._stopped, timeout)

    def detach(self) -> bool:
        """Take this store's Chroma system out of Chroma's per-path cache (private API,
        guarded): a new store at the same path then starts a system of its own instead of
        sharing this one, which keeps answering the readers under way until it closes.
        False when this Chroma is laid out otherwise: a new ``PersistentClient`` at the
        same path would then get this very system back, so the caller must close this
        store before opening another there. Detaching twice keeps the first."""
        if self._detached is not None:
            return True  # again: the system is already ours alone, and close() stops it
        try:
            from chromadb.api.shared_system_client import SharedSystemClient

            ident = self.client._identifier
            with SharedSystemClient._refcount_lock:
                system = SharedSystemClient._identifier_to_system.pop(ident, None)
                SharedSystemClient._identifier_to_refcount.pop(ident, None)
        except Exception:
            log.debug("could not detach the Chroma system", exc_info=True)
            return False
        if system is None:  # not in the cache (closed, or a layout we do not know)
            return False
        self._detached = system
        self.client._closed = True  # its close() must not release the new system
        return True

    @classmethod
    def persistent(cls, path: Path) -> VectorStore:
        """The embedded store in ``path``. Raises :class:`ChromaNotLoaded` when Chroma's
        code fails to import (here or in its lazy imports while the client starts): not
        the files' fault, so the caller must not take it for damage. Tried twice: an
        import that met another thread's half-done one (Python breaks such a deadlock
        with a half-initialised module) finds that module complete the second time."""
        tries = 2
        while True:
            try:
                return cls._open_persistent(path)
            except Exception as exc:
                tries -= 1
                if not failed_import(exc):
                    raise
                if not tries:
                    raise chroma_not_loaded(exc) from exc
                log.warning("Chroma failed to load (%s); trying once more", exc, exc_info=exc)

    @classmethod
    def _open_persistent(cls, path: Path) -> VectorStore:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        path.mkdir(parents=True, exist_ok=True)
        try:
            client = chromadb.PersistentClient(
                path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
            )
        except Exception:
            forget_system(path)
            raise
        return cls(client)

    def close(self) -> None:
        """Release the client: Chroma shares one system per path within a process and
        stops it when its last client closes, so a reopened store starts fresh (e.g.
        after its folder was deleted to be rebuilt). Closing twice does nothing more."""
        with self._use:
            if self.closed:
                return
            self.closed = True
            detached, self._detached = self._detached, None
        self._collections.clear()
        close = detached.stop if detached is not None else getattr(self.client, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a damaged store may fail even to close; it is set aside
                log.warning("closing the vector index failed", exc_info=True)
        with self._use:
            self._stopped = True
            self._use.notify_all()  # a writer in wait_closed

    def existing(self, encoder_id: str, kind: str = "full") -> Any | None:
        """The collection for reading, or None when it does not exist: a read (a search,
        a count) never creates one; only the writer does, through :meth:`collection`.
        An absence is not remembered: the writer may create it at any moment."""
        return existing_collection(
            self.client, self._collections, collection_name(encoder_id, kind)
        )

    def collection(self, encoder_id: str, kind: str = "full") -> Any:
        """The collection for writing, created when missing (the writer's thread only)."""
        name = collection_name(encoder_id, kind)
        col = self._collections.get(name)
        if col is None:
            col = self.client.get_or_create_collection(
                name,
                embedding_function=None,
                metadata={"encoder": encoder_id, "kind": kind},
                # Small HNSW batches and syncs: each write or sync holds the GIL for a
                # time that grows with them; at 100 the longest stays under ~100 ms.
                configuration={
                    "hnsw": {"space": "cosine", "batch_size": 100, "sync_threshold": 100}
                },
            )
            self._collections[name] = col
        return col

    def upsert(
        self,
        encoder_id: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        kind: str = "full",
    ) -> None:
        """Write in small chunks with a pause between them: Chroma holds the GIL while it
        writes, and a 150-vector upsert into a large collection blocks every other
        Python thread (the window's among them) for a few hundred milliseconds."""
        with _guard("write"):
            col = self.collection(encoder_id, kind)
            step = min(self.max_batch, HEADLESS_WRITE_CHUNK if is_headless() else WRITE_CHUNK)
            for i in range(0, len(ids), step):
                if i:
                    time.sleep(WRITE_PAUSE_S)  # let the GUI thread take the GIL
                col.upsert(
                    ids=list(ids[i : i + step]),
                    embeddings=np.asarray(vectors[i : i + step], np.float32),
                    metadatas=list(metadatas[i : i + step]) if metadatas else None,
                )

    def delete(self, encoder_id: str, ids: Iterable[str], kind: str = "full") -> None:
        ids = list(ids)
        with _guard("delete"):
            col = self.existing(encoder_id, kind)
            if col is None:  # nothing was ever written there: nothing to delete
                return
            for i in range(0, len(ids), self.max_batch):
                col.delete(ids=ids[i : i + self.max_batch])

    def ids(self, encoder_id: str, kind: str = "full") -> set[str]:
        out: set[str] = set()
        offset = 0
        with _guard("list its vectors"):
            col = self.existing(encoder_id, kind)
            while col is not None:
                got = col.get(include=[], limit=self.max_batch, offset=offset)["ids"]
                out.update(got)
                if len(got) < self.max_batch:
                    return out
                offset += len(got)
        return out

    def live_vectors(self) -> int:
        """Vectors in every collection of this store (what its HNSW indexes would hold
        with no deleted element). Writer side, like :meth:`collection`."""
        with _guard("count its vectors"):
            return sum(int(col.count()) for col in self.client.list_collections())

    def count(self, encoder_id: str, kind: str = "full") -> int:
        with _guard("count its vectors"):
            col = self.existing(encoder_id, kind)
            return 0 if col is None else int(col.count())

    def query(
        self, encoder_id: str, vectors: np.ndarray, k: int, kind: str = "full"
    ) -> list[list[Hit]]:
        """The k nearest vectors for each query vector (fewer when the collection holds
        fewer; none when it is empty)."""
        with _guard("answer a query"):
            col = self.existing(encoder_id, kind)
            if col is None:  # nothing indexed with this encoder yet: no neighbours
                return [[] for _ in range(len(vectors))]
            try:
                res = col.query(
                    query_embeddings=np.asarray(vectors, np.float32),
                    n_results=max(1, k),
                    include=["distances"],
                )
            except Exception as exc:  # an empty collection, in some Chroma versions
                if col.count() == 0:
                    return [[] for _ in range(len(vectors))]
                raise exc
        out: list[list[Hit]] = []
        for ids, dists in zip(res["ids"], res["distances"], strict=True):
            out.append([Hit(i, 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)])
        return out
