"""Moving a library between the embedded store and a Chroma server, without embedding
anything: ``store push`` uploads the catalog's vectors, features and files; ``store
pull`` fills the catalog (and the embedded index, derived from it) from the server.

Both run on the calling thread, which is the data dir's only writer while they run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.engine.analysis import REGION_FEATURES
from desktop_app.engine.catalog import FileRow, VectorRow, encode_path
from desktop_app.engine.library import Library
from desktop_app.engine.remote import RemoteVectorStore
from desktop_app.engine.shared import file_fields, mark_everything
from desktop_app.engine.vector_ids import stored_key

PULL_CHUNK = 200  # files per catalog transaction


@dataclass
class TransferSummary:
    url: str
    contents: int = 0
    vectors: int = 0
    files: int = 0
    embedded: int = 0  # always 0: nothing is re-embedded; reported so it can be checked
    seconds: float = 0.0
    encoders: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "contents": self.contents,
            "vectors": self.vectors,
            "files": self.files,
            "embedded": self.embedded,
            "encoders": self.encoders,
            "seconds": round(self.seconds, 3),
        }


def push(data_dir: Path | str | None, url: str, token: str | None = None) -> TransferSummary:
    """Upload the whole library at ``data_dir`` to the server at ``url``. Raises
    StoreUnavailable (with nothing lost: what did not go up stays marked)."""
    started = time.monotonic()
    with Library.open(data_dir, store_url=url, store_token=token) as lib:
        assert lib.uploader is not None
        mark_everything(lib.catalog)
        lib.upload()
        stats = lib.uploader.stats
        out = TransferSummary(lib.uploader.store.url, stats.contents, stats.vectors, stats.files)
        out.encoders = dict(stats.by_encoder)
        out.embedded = int(lib.slot.loaded)  # the encoder is never even loaded
    out.seconds = time.monotonic() - started
    return out


def pull(data_dir: Path | str | None, url: str, token: str | None = None) -> TransferSummary:
    """Fill the embedded library at ``data_dir`` from the server: this machine's files
    (and other machines' files at paths that exist here), their contents' vectors and
    features. The embedded index is then rebuilt from the catalog."""
    started = time.monotonic()
    remote = RemoteVectorStore(url, token)
    try:
        with Library.open(data_dir, store_url="") as lib:
            out = TransferSummary(remote.url)
            collections = remote.vector_collections()
            for chunk in _chunks(_entries_for(lib, remote), PULL_CHUNK):
                _pull_chunk(lib, remote, collections, chunk, out)
            for encoder in {enc for enc, _ in collections}:
                lib.sync_store(encoder)
            if lib.catalog.get_meta("active_model") is None and out.encoders:
                best = max(out.encoders, key=lambda e: out.encoders[e])
                lib.catalog.set_meta("active_model", best)
            out.embedded = int(lib.slot.loaded)
    finally:
        remote.close()
    out.seconds = time.monotonic() - started
    return out


def _entries_for(lib: Library, remote: RemoteVectorStore) -> list[dict[str, Any]]:
    """File entries to bring here: ours first, then others' at paths we have too."""
    by_path: dict[str, dict[str, Any]] = {}
    for e in remote.all_files():
        path, ours = str(e["path"]), e.get("host") == lib.machine
        if path in by_path and not ours:
            continue
        if ours or os.path.exists(path):
            by_path[path] = e
    return list(by_path.values())


def _pull_chunk(
    lib: Library,
    remote: RemoteVectorStore,
    collections: list[tuple[str, str]],
    entries: list[dict[str, Any]],
    out: TransferSummary,
) -> None:
    """One transaction: files with their contents' vectors and features, so a pull cut
    short leaves no vectors without a file (those would be collected as garbage)."""
    catalog = lib.catalog
    fps = sorted({str(e["fp"]) for e in entries})
    vectors: dict[str, list[VectorRow]] = {}
    for encoder, kind in collections:
        have = catalog.fingerprints_with_vectors(encoder, kind)
        wanted = [fp for fp in fps if fp not in have]
        for vid, meta, vec in remote.get_vectors(encoder, kind, wanted):
            fp, idx, box = stored_key(vid, meta)
            vectors.setdefault(encoder, []).append(VectorRow(fp, kind, idx, box, vec))
    features = {kind: remote.features(kind, fps) for kind in REGION_FEATURES}
    rows = [_file_row(e) for e in entries]
    with catalog.transaction() as db:
        for encoder, vrows in vectors.items():
            catalog.put_vectors(encoder, vrows, db)
            out.vectors += len(vrows)
            out.encoders[encoder] = out.encoders.get(encoder, 0) + len(vrows)
        for kind, blobs in features.items():
            for fp, data in blobs.items():
                catalog.put_feature(fp, kind, data, db)
        for root in {r.root for r in rows}:
            db.execute(
                "INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)",
                (encode_path(root), time.time()),
            )
        catalog.put_files(rows, db)
    out.files += len(rows)
    out.contents += len({fp for vrows in vectors.values() for fp in (r.fingerprint for r in vrows)})


def _file_row(e: dict[str, Any]) -> FileRow:
    return FileRow(**file_fields(e))


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
