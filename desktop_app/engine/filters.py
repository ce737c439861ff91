"""Result filters: watched folder, file type, date range, minimum dimensions, match kind,
and files to leave out (the query's own file).

A filter is applied to catalog rows right after the vector store lookup
(``search.expand_to_files``), never by fetching every file: the store is asked for
``OVERFETCH`` times as many neighbours when a filter is on, so a filter that removes most
of the nearest contents still fills the page from the next ones.

Dates: the day a photo was taken, from its EXIF capture time (read from the header at
index time and kept in the catalog, ``FileRow.taken``), else the day the file was last
modified (local time). EXIF times are the camera's clock, without a time zone, so the day
is the one the photographer saw.

Pure data and pure functions: any thread may use them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime

from desktop_app.engine.catalog import FileRow

OVERFETCH = 4  # neighbours asked per wanted result when a filter is on
MATCH_KINDS = ("full", "partial")


@dataclass(frozen=True)
class ResultFilter:
    folders: tuple[str, ...] = ()  # watched folders (roots) to keep; empty: all
    file_types: tuple[str, ...] = ()  # extensions without the dot, lower case; empty: all
    date_from: date | None = None  # taken (else modified) on or after: FileRow.day
    date_to: date | None = None  # taken (else modified) on or before
    min_width: int = 0
    min_height: int = 0
    match: str = ""  # "full" | "partial" | "": both
    exclude_paths: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.match and self.match not in MATCH_KINDS:
            raise ValueError(f"match kind must be one of {MATCH_KINDS}, not {self.match!r}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("the date range ends before it starts")
        if self.min_width < 0 or self.min_height < 0:
            raise ValueError("minimum dimensions cannot be negative")

    @property
    def active(self) -> bool:
        return self != ResultFilter()

    @property
    def narrows_rows(self) -> bool:
        """Whether rows (not only the match kind) are filtered: the store must over-fetch."""
        return self.active and (self != ResultFilter(match=self.match))

    def fetch_count(self, top_k: int) -> int:
        """How many neighbours to ask the store for ``top_k`` results."""
        return top_k * OVERFETCH + len(self.exclude_paths) if self.narrows_rows else top_k

    def keeps_row(self, row: FileRow) -> bool:
        if row.path in self.exclude_paths:
            return False
        if self.folders and row.root not in self.folders:
            return False
        if self.file_types:
            ext = os.path.splitext(row.path)[1].lstrip(".").lower()
            if ext not in self.file_types:
                return False
        if self.min_width and (row.width or 0) < self.min_width:
            return False
        if self.min_height and (row.height or 0) < self.min_height:
            return False
        if self.date_from or self.date_to:
            day = row.day
            if self.date_from and day < self.date_from:
                return False
            if self.date_to and day > self.date_to:
                return False
        return True

    def keeps_match(self, match: str) -> bool:
        return not self.match or match == self.match

    def describe(self) -> str:
        """One line for the query label; empty when nothing is filtered."""
        parts = []
        if self.folders:
            parts.append("in " + ", ".join(os.path.basename(f) or f for f in self.folders))
        if self.file_types:
            parts.append(", ".join(self.file_types))
        if self.date_from or self.date_to:
            parts.append(f"{self.date_from or '…'} to {self.date_to or '…'}")
        if self.min_width or self.min_height:
            parts.append(f"≥ {self.min_width} × {self.min_height} px")
        if self.match:
            parts.append(f"{self.match} matches")
        if self.exclude_paths:
            parts.append("query file hidden")
        return "; ".join(parts)


NO_FILTER = ResultFilter()


def when_label(taken: str, mtime_ns: int) -> str:
    """ "taken 2019-07-14 15:32" from EXIF, else "modified …" from the file, else ""."""
    if taken:
        return "taken " + taken.replace("T", " ")[:16]
    if mtime_ns:
        return "modified " + datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
    return ""


def when_timestamp(taken: str, mtime_ns: int) -> float:
    """Seconds since the epoch for sorting by date: the capture time read as local time,
    else the modified time."""
    if taken:
        try:
            return datetime.fromisoformat(taken).timestamp()
        except (ValueError, OverflowError, OSError):
            pass
    return mtime_ns / 1e9
