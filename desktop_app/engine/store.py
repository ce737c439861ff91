"""The vector index: Chroma, one collection per encoder and vector kind.

It is derived data. The catalog holds every vector, so this index can be deleted and
rebuilt (``sync``) at any time without re-embedding. The default is an embedded
``PersistentClient`` in the data dir; a team can point the app at a Chroma server.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

WRITE_CHUNK = 16  # vectors per Chroma call (see VectorStore.upsert)
WRITE_PAUSE_S = 0.002


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity, 1 = identical
    metadata: dict[str, Any] | None


def collection_name(encoder_id: str, kind: str) -> str:
    """Chroma names allow [a-zA-Z0-9._-], 3-512 chars; encoder ids hold ':' and '/'."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", encoder_id).strip("-._")[:40]
    digest = hashlib.blake2b(encoder_id.encode(), digest_size=4).hexdigest()
    return f"{kind}-{slug}-{digest}"


class VectorStore:
    # True for a server several clients share (``remote.RemoteVectorStore``): its
    # contents are not this catalog's alone, so nothing may be deleted just because this
    # catalog lacks it.
    shared = False

    def __init__(self, client: Any) -> None:
        self.client = client
        self.max_batch = int(client.get_max_batch_size())
        self._collections: dict[str, Any] = {}

    @classmethod
    def persistent(cls, path: Path) -> VectorStore:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        path.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
        )
        return cls(client)

    def close(self) -> None:
        """Release the client: Chroma shares one system per path within a process and
        stops it when its last client closes, so a reopened store starts fresh (e.g.
        after its folder was deleted to be rebuilt)."""
        self._collections.clear()
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def collection(self, encoder_id: str, kind: str = "full") -> Any:
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
        col = self.collection(encoder_id, kind)
        step = min(self.max_batch, WRITE_CHUNK)
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
        col = self.collection(encoder_id, kind)
        for i in range(0, len(ids), self.max_batch):
            col.delete(ids=ids[i : i + self.max_batch])

    def ids(self, encoder_id: str, kind: str = "full") -> set[str]:
        col = self.collection(encoder_id, kind)
        out: set[str] = set()
        offset = 0
        while True:
            got = col.get(include=[], limit=self.max_batch, offset=offset)["ids"]
            out.update(got)
            if len(got) < self.max_batch:
                return out
            offset += len(got)

    def count(self, encoder_id: str, kind: str = "full") -> int:
        return int(self.collection(encoder_id, kind).count())

    def query(
        self, encoder_id: str, vectors: np.ndarray, k: int, kind: str = "full"
    ) -> list[list[Hit]]:
        """The k nearest vectors for each query vector (fewer when the collection holds
        fewer; none when it is empty)."""
        col = self.collection(encoder_id, kind)
        try:
            res = col.query(
                query_embeddings=np.asarray(vectors, np.float32),
                n_results=max(1, k),
                include=["distances", "metadatas"],
            )
        except Exception as exc:  # an empty collection, in some Chroma versions
            if col.count() == 0:
                return [[] for _ in range(len(vectors))]
            raise exc
        out: list[list[Hit]] = []
        for ids, dists, metas in zip(res["ids"], res["distances"], res["metadatas"], strict=True):
            out.append(
                [Hit(i, 1.0 - float(d), m) for i, d, m in zip(ids, dists, metas, strict=True)]
            )
        return out
