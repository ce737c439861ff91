"""The results grid's model: a flat list of SearchResult with lazily loaded thumbnails.

GUI thread only: the controller sets results from the searcher's signals; thumbnails are
decoded in the image pool and arrive through ThumbnailCache.ready, updating one row."""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QUrl,
    Slot,
)

from desktop_app.engine.filters import when_label, when_timestamp
from desktop_app.engine.search import SearchResult
from desktop_app.ui.thumbnails import ThumbnailCache

Index = QModelIndex | QPersistentModelIndex


class Role(IntEnum):
    Result = Qt.ItemDataRole.UserRole + 1
    Score = Qt.ItemDataRole.UserRole + 2
    Match = Qt.ItemDataRole.UserRole + 3
    Region = Qt.ItemDataRole.UserRole + 4
    Thumbnail = Qt.ItemDataRole.UserRole + 5
    Offline = Qt.ItemDataRole.UserRole + 6
    Gone = Qt.ItemDataRole.UserRole + 7  # deleted from the library since it was shown
    Confirmed = Qt.ItemDataRole.UserRole + 8  # a partial match verified by keypoints/colour


SORT_KEYS = {
    "score": lambda r: (-r.score, r.path),
    "name": lambda r: (Path(r.path).name.lower(), r.path),
    "date": lambda r: (-when_timestamp(r.taken, r.mtime_ns), r.path),
    "size": lambda r: (-r.size, r.path),
}


class ResultsModel(QAbstractListModel):
    def __init__(self, thumbnails: ThumbnailCache, parent: Any = None) -> None:
        super().__init__(parent)
        self._results: list[SearchResult] = []
        self._rows_by_key: dict[str, list[int]] = {}
        self._offline: set[str] = set()
        self._gone: set[int] = set()  # rows whose file left the library
        self.version = 0  # bumped by every new result list (a late follow-up is dropped)
        self.sort_order = "score"
        self.sort_reversed = (
            False  # each order's natural direction (best, A-Z, newest, largest) flipped
        )
        self.thumbnails = thumbnails
        thumbnails.ready.connect(self._thumbnail_ready)

    # -- content ----------------------------------------------------------------
    def set_results(self, results: Sequence[SearchResult]) -> None:
        self.beginResetModel()
        self._results = sorted(results, key=SORT_KEYS[self.sort_order])
        if self.sort_reversed:
            self._results.reverse()
        self._gone = set()
        self.version += 1
        self._reindex()
        self.endResetModel()

    def follow(self, version: int, resolved: Sequence[SearchResult | None]) -> None:
        """Results brought up to date with the library (``follow_library``): a moved
        file's row gets its new path, a deleted one is marked gone. Rows stay where they
        are, so the selection and the scroll position hold."""
        if version != self.version or len(resolved) != len(self._results):
            return  # other results are shown now
        for row, r in enumerate(resolved):
            if r is None:
                self._gone.add(row)
            else:
                self._results[row] = r
                self._gone.discard(row)
        self._reindex()
        if self._results:
            self.dataChanged.emit(self.index(0), self.index(len(self._results) - 1))

    def is_gone(self, row: int) -> bool:
        return row in self._gone

    def set_sort_order(self, order: str) -> None:
        if order in SORT_KEYS and order != self.sort_order:
            self.sort_order = order
            self.set_results(list(self._results))

    def set_reversed(self, reverse: bool) -> None:
        if reverse != self.sort_reversed:
            self.sort_reversed = reverse
            self.set_results(list(self._results))

    def set_offline_roots(self, roots: Sequence[str]) -> None:
        self._offline = set(roots)
        if self._results:
            self.dataChanged.emit(self.index(0), self.index(len(self._results) - 1))

    def result(self, row: int) -> SearchResult:
        return self._results[row]

    def results(self) -> list[SearchResult]:
        return list(self._results)

    def _reindex(self) -> None:
        self._rows_by_key = {}
        for row, r in enumerate(self._results):
            self._rows_by_key.setdefault(ThumbnailCache.key_for(r.path, r.fingerprint), []).append(
                row
            )

    # -- Qt model API -------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self._results)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._results):
            return None
        r = self._results[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return Path(r.path).name
        if role == Qt.ItemDataRole.ToolTipRole:
            gone = "\nDeleted from the library" if index.row() in self._gone else ""
            return tooltip(r) + gone
        if role == Role.Result:
            return r
        if role == Role.Score:
            return r.score
        if role == Role.Match:
            return r.match
        if role == Role.Region:
            return r.region
        if role == Role.Confirmed:
            return r.confirmed
        if role == Role.Gone:
            return index.row() in self._gone
        if role == Role.Offline:
            return any(r.path.startswith(root.rstrip(os.sep) + os.sep) for root in self._offline)
        if role in (Role.Thumbnail, Qt.ItemDataRole.DecorationRole):
            return self.thumbnails.get(ThumbnailCache.key_for(r.path, r.fingerprint), r.path)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        """Dragging results out gives other applications the files themselves."""
        mime = QMimeData()
        rows = sorted({i.row() for i in indexes if i.isValid()})
        mime.setUrls([QUrl.fromLocalFile(self._results[r].path) for r in rows])
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    @Slot(str)
    def _thumbnail_ready(self, key: str) -> None:
        for row in self._rows_by_key.get(key, []):
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole, Role.Thumbnail])


def tooltip(r: SearchResult) -> str:
    dims = f"{r.width} × {r.height} px" if r.width and r.height else "size unknown"
    size = f"{r.size / 1e6:.1f} MB" if r.size >= 1e5 else f"{r.size / 1e3:.0f} KB"
    when = when_label(r.taken, r.mtime_ns)
    lines = [r.path, f"{dims} · {size} · {when}", f"similarity {r.score:.3f} ({match_label(r)})"]
    if r.region:
        x, y, w, h = r.region
        lines.append(f"matched region: x={x} y={y} w={w} h={h}")
    if r.host:
        where = "" if r.here else "; not on this machine"
        lines.append(f"indexed on {r.host}{where}")
    return "\n".join(lines)


def match_label(r: SearchResult) -> str:
    """What kind of match a result is, in the words of its badge."""
    if r.match != "partial":
        return "full match"
    return "verified partial" if r.confirmed else "similar region"
