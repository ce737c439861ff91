"""The vector store on a Chroma server (``chroma run``), shared by several clients.

The same collections as the embedded store (one per encoder and vector kind, ids made
from content fingerprints, so two clients that index the same content write the same
ids and nothing is doubled), plus two collections that let a client which did not index
an image find and verify it:

* ``library-files``: one entry per file per machine (``host``, ``root``, ``path``,
  ``fp``, size, mtime, pixel size); search results are expanded to files through it.
* ``library-features``: one entry per content with its keypoints and colour copy
  (base64 in the metadata), which partial-match verification reads.

Chroma entries need an embedding: these two get a 2-d point derived from their id (a
constant would give HNSW thousands of equal points). They are only ever read by id or
by metadata filter, never by similarity.

The client connects on first use, so a library opens (and indexes locally) while the
server is down; every call that cannot reach the server raises :class:`StoreUnavailable`
with a plain message. Threads: the HTTP client is thread-safe; the indexing thread
writes (and alone creates collections), search threads read. One thread connects at a
time (``_connect_lock``, see :attr:`RemoteVectorStore.client`); the connection is bounded
by timeouts from the first request (``chroma_http.py``) and the others wait for it for a
bounded time, so a server that stops answering can never block any thread for good.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from desktop_app.engine.errors import DesktopAppError, StoreDamaged
from desktop_app.engine.store import Hit, VectorStore, existing_collection
from desktop_app.engine.vector_ids import Box, metadata_box

log = logging.getLogger(__name__)

FILES = "library-files"
FEATURES = "library-features"
TOKEN_ENV = "DESKTOP_APP_STORE_TOKEN"
REMOTE_CHUNK = 256  # vectors per HTTP call: big enough to amortise the round trip
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 120.0  # a big upsert or a 10M-vector query on a busy server
REMOTE_GET = 300  # ids per get: keeps a request's URL-free JSON body modest


class StoreUnavailable(DesktopAppError):
    """The Chroma server cannot be reached (down, wrong address, refused the token)."""


def parse_store_url(url: str) -> tuple[str, int, bool]:
    """``http://HOST:PORT`` -> (host, port, ssl); a clear message for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DesktopAppError(f"the store URL must look like http://HOST:PORT, got {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise DesktopAppError(f"the store URL takes no path or query: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 8000)
    except ValueError:
        raise DesktopAppError(f"the store URL has a bad port: {url!r}") from None
    return parts.hostname, port, parts.scheme == "https"


def placeholder_vector(key: str) -> list[float]:
    """The 2-d point a files/features entry is stored at (see the module docstring)."""
    d = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return [d[0] / 255.0 + d[1] / 65025.0, d[2] / 255.0 + d[3] / 65025.0]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


class RemoteVectorStore(VectorStore):
    shared = True

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.strip().rstrip("/")
        self.host, self.port, self.ssl = parse_store_url(self.url)
        self.token = token or None
        self._client: Any = None
        self._connect_lock = threading.Lock()
        self._collections: dict[str, Any] = {}
        self.max_batch = REMOTE_CHUNK
        self._init_lifetime()

    # -- connection -------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The connected client; connects on first use, one thread at a time: chromadb's
        per-process cache of clients is filled check-then-insert without a lock, so two
        connections made at once leave one System (and its HTTP session) orphaned. The
        connecting thread is bounded by its timeouts (``chroma_http.py``); a thread that
        waits for it longer than one handshake gives up with :class:`StoreUnavailable`,
        so a server that does not answer never holds any thread for good."""
        client = self._client
        if client is not None:
            return client
        from desktop_app.engine import chroma_http

        wait = chroma_http.HANDSHAKE_TIMEOUT_S + chroma_http.CONNECT_TIMEOUT_S
        if not self._connect_lock.acquire(timeout=wait):
            raise self._unavailable("another connection attempt to it is still waiting")
        try:
            if self._client is not None:  # the thread before this one connected
                return self._client
            with self.reachable():
                client = self._connect()
                try:
                    max_batch = min(REMOTE_CHUNK, int(client.get_max_batch_size()))
                except BaseException:
                    _close_quietly(client)  # else each failed attempt leaks a System
                    raise
            self._client, self.max_batch = client, max_batch
            return client
        finally:
            self._connect_lock.release()

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def _connect(self) -> Any:
        import chromadb
        import httpx
        from chromadb.config import Settings as ChromaSettings

        from desktop_app.engine import chroma_http

        chroma_http.install()  # timeouts before the client's first request

        # chromadb's HTTP session has no timeout: a host that drops packets would hang
        # the caller for good. Check it answers first, then give the session timeouts.
        try:
            socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise self._unavailable(exc.strerror or str(exc) or type(exc).__name__) from exc

        extra: dict[str, Any] = {}
        if self.token:
            extra = {
                "chroma_client_auth_provider": "chromadb.auth.token_authn.TokenAuthClientProvider",
                "chroma_client_auth_credentials": self.token,
            }
        client = chromadb.HttpClient(
            host=self.host,
            port=self.port,
            ssl=self.ssl,
            settings=ChromaSettings(anonymized_telemetry=False, **extra),
        )
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        return client

    @contextmanager
    def reachable(self) -> Iterator[None]:
        """Turn the transport's many ways of failing into one message for the user (also
        when the embedded store's guard has already called it damage: a server that
        does not answer is not a damaged index)."""
        try:
            yield
        except StoreUnavailable:
            raise
        except StoreDamaged as exc:
            why = self._why_unreachable(exc.__cause__)
            if why is None:
                raise
            raise self._unavailable(why) from exc.__cause__
        except Exception as exc:
            why = self._why_unreachable(exc)
            if why is not None:
                raise self._unavailable(why) from exc
            # Chroma's errors for auth failures carry their HTTP status in the name
            name = type(exc).__name__
            if "Auth" in name or "Unauthorized" in name or "Forbidden" in name:
                raise StoreUnavailable(
                    f"the Chroma server at {self.url} refused the token ({exc})"
                ) from exc
            raise

    @staticmethod
    def _why_unreachable(exc: BaseException | None) -> str | None:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return str(exc) or type(exc).__name__
        if isinstance(exc, ValueError) and "could not connect" in str(exc).lower():
            return "connection refused"  # chromadb's own words at start-up
        if isinstance(exc, ValueError):
            # chromadb's handshake re-raises a transport error (a time-out) as ValueError
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, httpx.TransportError):
                return str(cause) or type(cause).__name__
        return None

    def _unavailable(self, why: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"cannot reach the Chroma server at {self.url} ({why}); is `chroma run` running there?"
        )

    def close(self) -> None:
        self.closed = True
        self._collections.clear()
        client, self._client = self._client, None
        _close_quietly(client)

    def ping(self) -> None:
        with self.reachable():
            self.client.heartbeat()

    # -- vectors (the embedded store's operations, through the reachability guard) ------
    def collection(self, encoder_id: str, kind: str = "full") -> Any:
        with self.reachable():
            return super().collection(encoder_id, kind)

    def existing(self, encoder_id: str, kind: str = "full") -> Any | None:
        with self.reachable():
            return super().existing(encoder_id, kind)

    def upsert(
        self,
        encoder_id: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        kind: str = "full",
    ) -> None:
        """No pauses between chunks: the GIL is free while the request is on the wire."""
        col = self.collection(encoder_id, kind)
        with self.reachable():
            for i in range(0, len(ids), self.max_batch):
                col.upsert(
                    ids=list(ids[i : i + self.max_batch]),
                    embeddings=np.asarray(vectors[i : i + self.max_batch], np.float32),
                    metadatas=list(metadatas[i : i + self.max_batch]) if metadatas else None,
                )

    def delete(self, encoder_id: str, ids: Iterable[str], kind: str = "full") -> None:
        with self.reachable():
            super().delete(encoder_id, ids, kind)

    def ids(self, encoder_id: str, kind: str = "full") -> set[str]:
        with self.reachable():
            return super().ids(encoder_id, kind)

    def count(self, encoder_id: str, kind: str = "full") -> int:
        with self.reachable():
            return super().count(encoder_id, kind)

    def query(
        self, encoder_id: str, vectors: np.ndarray, k: int, kind: str = "full"
    ) -> list[list[Hit]]:
        with self.reachable():
            return super().query(encoder_id, vectors, k, kind)

    def vector_collections(self) -> list[tuple[str, str]]:
        """(encoder, kind) of every vector collection on the server."""
        out = []
        with self.reachable():
            for col in self.client.list_collections():
                meta = col.metadata or {}
                if "encoder" in meta and "kind" in meta:
                    out.append((str(meta["encoder"]), str(meta["kind"])))
        return out

    def region_boxes(self, encoder_id: str, ids: Sequence[str]) -> dict[str, Box]:
        """Boxes of region vectors by id (their metadata), for those the server has."""
        col = self.existing(encoder_id, "region")
        out: dict[str, Box] = {}
        if col is None:
            return out
        with self.reachable():
            for chunk in _chunks(list(dict.fromkeys(ids)), REMOTE_GET):
                got = col.get(ids=chunk, include=["metadatas"])
                for vid, meta in zip(got["ids"], got["metadatas"], strict=True):
                    box = metadata_box(dict(meta or {}))
                    if box is not None:
                        out[vid] = box
        return out

    def get_vectors(
        self, encoder_id: str, kind: str, fingerprints: Sequence[str]
    ) -> list[tuple[str, dict[str, Any], np.ndarray]]:
        """(id, metadata, vector) of these contents' vectors of one kind."""
        col = self.existing(encoder_id, kind)
        out: list[tuple[str, dict[str, Any], np.ndarray]] = []
        if col is None:
            return out
        with self.reachable():
            step = REMOTE_GET if kind == "full" else REMOTE_GET // 10  # ≤ 9 regions each
            for chunk in _chunks(list(fingerprints), step):
                if kind == "full":
                    got = col.get(ids=chunk, include=["embeddings", "metadatas"])
                else:
                    got = col.get(where={"fp": {"$in": chunk}}, include=["embeddings", "metadatas"])
                for i, m, e in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True):
                    out.append((i, dict(m or {}), np.asarray(e, np.float32)))
        return out

    def delete_contents(self, fingerprints: Sequence[str]) -> None:
        """Every vector and the features of these contents, in every collection."""
        if not fingerprints:
            return
        with self.reachable():
            for encoder, kind in self.vector_collections():
                col = self.existing(encoder, kind)
                if col is None:  # removed by another client meanwhile
                    continue
                for chunk in _chunks(list(fingerprints), REMOTE_GET):
                    if kind == "full":
                        col.delete(ids=chunk)
                    else:
                        col.delete(where={"fp": {"$in": chunk}})
            feats = self._aux(FEATURES)
            for chunk in _chunks(list(fingerprints), REMOTE_GET):
                feats.delete(ids=chunk)

    # -- files and features ------------------------------------------------------------
    def _aux(self, name: str) -> Any:
        """The files or features collection for writing, created when missing."""
        col = self._collections.get(name)
        if col is None:
            with self.reachable():
                col = self.client.get_or_create_collection(
                    name, embedding_function=None, metadata={"kind": name}
                )
            self._collections[name] = col
        return col

    def _aux_existing(self, name: str) -> Any | None:
        """The files or features collection for reading; None when no client wrote one
        yet (a search never creates it)."""
        with self.reachable():
            return existing_collection(self.client, self._collections, name)

    def put_files(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self._put(FILES, entries)

    def delete_files(self, ids: Sequence[str]) -> None:
        col = self._aux_existing(FILES)
        if col is None:
            return
        with self.reachable():
            for chunk in _chunks(list(ids), REMOTE_GET):
                col.delete(ids=chunk)

    def files_for(self, fingerprints: Sequence[str]) -> list[dict[str, Any]]:
        """The file entries (every machine's) holding these contents."""
        col = self._aux_existing(FILES)
        out: list[dict[str, Any]] = []
        if col is None:
            return out
        with self.reachable():
            for chunk in _chunks(list(dict.fromkeys(fingerprints)), REMOTE_GET):
                got = col.get(where={"fp": {"$in": chunk}}, include=["metadatas"])
                out.extend(dict(m) for m in got["metadatas"] if m)
        return out

    def files_at(self, path: str) -> list[dict[str, Any]]:
        col = self._aux_existing(FILES)
        if col is None:
            return []
        with self.reachable():
            got = col.get(where={"path": path}, include=["metadatas"])
        return [dict(m) for m in got["metadatas"] if m]

    def all_files(self) -> Iterator[dict[str, Any]]:
        col = self._aux_existing(FILES)
        offset = 0
        while col is not None:
            with self.reachable():
                got = col.get(include=["metadatas"], limit=REMOTE_GET, offset=offset)
            yield from (dict(m) for m in got["metadatas"] if m)
            if len(got["ids"]) < REMOTE_GET:
                return
            offset += len(got["ids"])

    def put_features(self, entries: Sequence[tuple[str, dict[str, bytes]]]) -> None:
        self._put(FEATURES, [(fp, {k: b64(v) for k, v in feats.items()}) for fp, feats in entries])

    def features(self, kind: str, fingerprints: Sequence[str]) -> dict[str, bytes]:
        col = self._aux_existing(FEATURES)
        out: dict[str, bytes] = {}
        if col is None:
            return out
        with self.reachable():
            for chunk in _chunks(list(dict.fromkeys(fingerprints)), REMOTE_GET // 3):
                got = col.get(ids=chunk, include=["metadatas"])
                for fp, m in zip(got["ids"], got["metadatas"], strict=True):
                    if m and kind in m:
                        out[fp] = unb64(str(m[kind]))
        return out

    def count_aux(self, name: str) -> int:
        col = self._aux_existing(name)
        if col is None:
            return 0
        with self.reachable():
            return int(col.count())

    def _put(self, name: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        col = self._aux(name)
        step = max(1, self.max_batch // 4)  # features entries are ~30 KB each
        with self.reachable():
            for chunk in _chunks(list(entries), step):
                col.upsert(
                    ids=[i for i, _ in chunk],
                    embeddings=np.asarray([placeholder_vector(i) for i, _ in chunk], np.float32),
                    metadatas=[m for _, m in chunk],
                )


def _close_quietly(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a client of a server that is gone
            log.debug("closing the Chroma client failed", exc_info=True)


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
