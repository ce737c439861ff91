"""Vector ids and metadata in the vector store: how a catalog row (content, kind,
index, box) is named and described there, and read back. The catalog, the indexer, the
store, the team server and searches all use these, so the scheme is written once."""

from __future__ import annotations

from typing import Any

Box = tuple[int, int, int, int]  # x, y, w, h in the full picture's pixels


def vector_id(fingerprint: str, kind: str, idx: int) -> str:
    """A vector's id in the store: the content's fingerprint for its full vector,
    ``fingerprint:idx`` for its regions (two machines indexing one content agree)."""
    return fingerprint if kind == "full" else f"{fingerprint}:{idx}"


def parse_vector_id(vid: str) -> tuple[str, int]:
    """(fingerprint, idx) of an id made by :func:`vector_id`."""
    fp, sep, idx = vid.partition(":")
    return fp, int(idx) if sep else 0


def vector_metadata(fingerprint: str, box: Box | None) -> dict[str, Any]:
    """What the store keeps beside a vector: its content and, for a region, its box."""
    meta: dict[str, Any] = {"fp": fingerprint}
    if box is not None:
        meta.update(x=box[0], y=box[1], w=box[2], h=box[3])
    return meta


def metadata_box(meta: dict[str, Any]) -> Box | None:
    """The region box of :func:`vector_metadata`'s dictionary (None for a full vector)."""
    if "x" not in meta:
        return None
    return int(meta["x"]), int(meta["y"]), int(meta["w"]), int(meta["h"])


def stored_key(vid: str, meta: dict[str, Any]) -> tuple[str, int, Box | None]:
    """(fingerprint, idx, box) of a vector the store returned with its metadata."""
    fp, idx = parse_vector_id(vid)
    return str(meta.get("fp") or fp), idx, metadata_box(meta)
