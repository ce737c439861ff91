"""Search: vectors in, ranked files out.

The vector index stores one entry per distinct content; results are expanded to every
file holding that content through the catalog, so a deleted file can never come back
and a moved one is found under its new path. With a store server, the files are those
of every machine that indexed the content (``shared.SharedView``); a result from another
machine carries its ``host``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol, TypedDict

from desktop_app.engine.catalog import FileRow, VectorRow
from desktop_app.engine.filters import NO_FILTER, ResultFilter
from desktop_app.engine.vector_ids import Box


class Match(StrEnum):
    """How a result matches the query. A ``StrEnum`` so it compares equal to, prints as
    and serialises to JSON as the plain word (``"full"``) the CLI has always written."""

    FULL = "full"  # the whole image, give or take an edit
    PARTIAL = "partial"  # a region of one image is the other (see ``region``)


class ContentReader(Protocol):
    """What searching reads: the catalog, or the catalog and a store server together."""

    def paths_for(self, fingerprints: Sequence[str]) -> dict[str, list[FileRow]]: ...

    def features(self, kind: str, fingerprints: Sequence[str]) -> dict[str, bytes]: ...

    def vectors(
        self, encoder: str, kind: str = "full", fingerprints: Sequence[str] | None = None
    ) -> Iterable[VectorRow]: ...

    def region_boxes(self, encoder: str, ids: Sequence[str]) -> dict[str, Box]: ...

    def file(self, path: str) -> FileRow | None: ...


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
    host: str | None = None  # the machine that indexed it, when not this one
    # a partial match confirmed by keypoints or the colour layout ("verified partial"),
    # not only by region-embedding similarity ("similar region")
    confirmed: bool = False
    taken: str = ""  # EXIF capture time (FileRow.taken), "" when none

    @property
    def here(self) -> bool:
        """Whether it can be opened on this machine: ours, or at a path we have too."""
        return self.host is None or os.path.exists(self.path)

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "score": round(float(self.score), 6),
            "match": str(self.match),
            "region": list(self.region) if self.region else None,
        }
        if self.host is not None:
            out["host"] = self.host
        return out


def result_for(
    row: FileRow, score: float, match: Match = Match.FULL, region: Box | None = None
) -> SearchResult:
    return SearchResult(score=score, match=match, region=region, **file_details(row))


class FileDetails(TypedDict):
    """The fields of a result that come from its file's catalog row, not the search."""

    path: str
    fingerprint: str
    width: int | None
    height: int | None
    size: int
    mtime_ns: int
    host: str | None
    taken: str


def file_details(row: FileRow) -> FileDetails:
    return FileDetails(
        path=row.path,
        fingerprint=row.fingerprint or "",
        width=row.width,
        height=row.height,
        size=row.size,
        mtime_ns=row.mtime_ns,
        host=getattr(row, "host", None),  # shared.OriginRow: another machine's file
        taken=row.taken or "",
    )


def expand_to_files(
    catalog: ContentReader,
    scored: Sequence[tuple[str, float, Match, Box | None]],
    top_k: int,
    threshold: float,
    prefer_path: str | None = None,
    keep_order: bool = False,
    result_filter: ResultFilter = NO_FILTER,
    confirmed: frozenset[str] = frozenset(),
) -> list[SearchResult]:
    """(fingerprint, score, match, region) best first -> files, at most top_k.

    Ties (identical content at several paths) list ``prefer_path`` first, then by path.
    With ``keep_order`` the given order is kept (it may rank by more than the score).
    ``result_filter`` drops files right after the catalog lookup; ``confirmed`` names the
    contents whose partial match was verified.
    """
    kept = [s for s in scored if s[1] >= threshold and result_filter.keeps_match(s[2])]
    files = catalog.paths_for([fp for fp, *_ in kept])
    out: list[SearchResult] = []
    for fp, score, match, region in kept:
        rows = sorted(
            (r for r in files.get(fp, []) if result_filter.keeps_row(r)),
            key=lambda r: (r.path != prefer_path, r.path),
        )
        if fp in confirmed:
            out.extend(replace(result_for(r, score, match, region), confirmed=True) for r in rows)
            if keep_order and len(out) >= top_k:
                break
            continue
        out.extend(result_for(r, score, match, region) for r in rows)
        if keep_order and len(out) >= top_k:
            break
    if not keep_order:
        out.sort(key=lambda r: (-r.score, r.path != prefer_path, r.path))
    return out[:top_k]


def follow_library(
    catalog: ContentReader, results: Sequence[SearchResult]
) -> list[SearchResult | None]:
    """Results shown earlier, brought up to date with the catalog after an index run.

    Each result is looked up by its content: still at its path, it is kept with fresh
    file details (``file_details``: what the search found stays as it was); moved
    or renamed, it gets the new path (one not already shown); gone from the library, it
    becomes None. A path that now holds other content is kept as it is: the file is
    still there to open.
    """
    files = catalog.paths_for(sorted({r.fingerprint for r in results if r.fingerprint}))
    shown = {r.path for r in results}
    taken: set[str] = set()
    out: list[SearchResult | None] = []
    for r in results:
        rows = files.get(r.fingerprint, []) if r.fingerprint else []
        here = next((row for row in rows if row.path == r.path), None)
        moved = next((row for row in rows if row.path not in shown and row.path not in taken), None)
        if here is None and moved is not None:
            taken.add(moved.path)
        fresh = here or moved
        if fresh is not None:
            out.append(replace(r, **file_details(fresh)))
        else:
            row = catalog.file(r.path)
            out.append(r if row is not None and row.ok else None)
    return out
