"""Search: vectors in, ranked files out.

The vector index stores one entry per distinct content; results are expanded to every
file holding that content through the catalog, so a deleted file can never come back
and a moved one is found under its new path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from desktop_app.engine.catalog import Catalog, FileRow

Box = tuple[int, int, int, int]


class Match(StrEnum):
    """How a result matches the query. A ``StrEnum`` so it compares equal to, prints as
    and serialises to JSON as the plain word (``"full"``) the CLI has always written."""

    FULL = "full"  # the whole image, give or take an edit
    PARTIAL = "partial"  # a region of one image is the other (see ``region``)


@dataclass(frozen=True)
class SearchResult:
    path: str
    score: float
    match: Match = Match.FULL
    region: Box | None = None  # for partial matches: [x, y, w, h] in the file's pixels
    fingerprint: str = ""
    width: int | None = None
    height: int | None = None
    size: int = 0
    mtime_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "score": round(float(self.score), 6),
            "match": str(self.match),
            "region": list(self.region) if self.region else None,
        }


def result_for(
    row: FileRow, score: float, match: Match = Match.FULL, region: Box | None = None
) -> SearchResult:
    return SearchResult(
        row.path,
        score,
        match,
        region,
        row.fingerprint or "",
        row.width,
        row.height,
        row.size,
        row.mtime_ns,
    )


def expand_to_files(
    catalog: Catalog,
    scored: Sequence[tuple[str, float, Match, Box | None]],
    top_k: int,
    threshold: float,
    prefer_path: str | None = None,
    keep_order: bool = False,
) -> list[SearchResult]:
    """(fingerprint, score, match, region) best first -> files, at most top_k.

    Ties (identical content at several paths) list ``prefer_path`` first, then by path.
    With ``keep_order`` the given order is kept (it may rank by more than the score).
    """
    kept = [s for s in scored if s[1] >= threshold]
    files = catalog.paths_for([fp for fp, *_ in kept])
    out: list[SearchResult] = []
    for fp, score, match, region in kept:
        rows = sorted(files.get(fp, []), key=lambda r: (r.path != prefer_path, r.path))
        out.extend(result_for(r, score, match, region) for r in rows)
        if keep_order and len(out) >= top_k:
            break
    if not keep_order:
        out.sort(key=lambda r: (-r.score, r.path != prefer_path, r.path))
    return out[:top_k]
