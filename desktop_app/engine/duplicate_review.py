"""Reviewing a duplicate group: which file to keep (pure rules), moving the others to
the system trash, and remembering that a group is not duplicates.

Threads: the keep rules are pure functions. :func:`trash_files` writes the catalog and
the vector index: call it on the thread that owns writes (the indexing worker).
:func:`mark_not_duplicates` writes one small catalog table (SQLite serialises it).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from desktop_app.engine.catalog import Catalog
from desktop_app.engine.duplicates import DuplicateFile, DuplicateGroup
from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.indexer import collect_garbage
from desktop_app.engine.store import VectorStore


# -- "not duplicates" ------------------------------------------------------------------
def mark_not_duplicates(catalog: Catalog, group: DuplicateGroup) -> int:
    """Remember that the group's contents are not duplicates of one another; they are
    never grouped together again. Returns how many pairs were marked."""
    fps = group.fingerprints
    pairs = [(a, b) for i, a in enumerate(fps) for b in fps[i + 1 :]]
    catalog.mark_not_duplicates(pairs)
    return len(pairs)


# -- keep the best (pure) --------------------------------------------------------------
def keep_largest(files: Sequence[DuplicateFile]) -> DuplicateFile:
    """Most pixels, then most bytes, then the shortest path (originals rarely nest)."""
    return max(files, key=lambda f: (f.pixels, f.size, -len(f.path), f.path))


def keep_newest(files: Sequence[DuplicateFile]) -> DuplicateFile:
    """The latest modified; ties go to the largest."""
    newest = max(f.mtime_ns for f in files)
    return keep_largest([f for f in files if f.mtime_ns == newest])


def keep_by_path(files: Sequence[DuplicateFile], rule: str) -> DuplicateFile | None:
    """The file whose path matches ``rule`` (a glob such as ``*/Originals/*``, or a
    folder); the largest of several; None when no path matches."""
    folder = rule.rstrip("/\\") + os.sep
    hits = [f for f in files if fnmatch.fnmatch(f.path, rule) or f.path.startswith(folder)]
    return keep_largest(hits) if hits else None


KEEP_RULES: dict[str, Callable[[Sequence[DuplicateFile]], DuplicateFile]] = {
    "largest": keep_largest,
    "newest": keep_newest,
}


# -- moving to the trash ---------------------------------------------------------------
@dataclass
class TrashReport:
    trashed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed_vectors: int = 0


def trash_files(
    catalog: Catalog,
    store: VectorStore,
    group: DuplicateGroup,
    keep: Sequence[str],
    trash: Callable[[str], None] | None = None,
) -> TrashReport:
    """Move every file of ``group`` except ``keep`` to the system trash (never a hard
    delete), then drop them from the catalog and the index. Refuses to run unless at
    least one kept file of the group is still on disk as it was indexed, so a group is
    never emptied; a file changed since it was indexed is left alone and listed."""
    if trash is None:
        from send2trash import send2trash as trash_one

        trash = trash_one
    by_path = {f.path: f for f in group.files}
    unknown = [k for k in keep if k not in by_path]
    if unknown:
        raise DesktopAppError(f"{unknown[0]} is not in this group")
    if not any(_unchanged(by_path[k]) for k in keep):
        raise DesktopAppError(
            "none of the files to keep is on disk as it was indexed; nothing was moved"
        )
    report = TrashReport()
    gone: list[str] = []
    for f in group.files:
        if f.path in keep:
            continue
        if not os.path.lexists(f.path):
            gone.append(f.path)  # already gone: only the catalog still lists it
            continue
        if not _unchanged(f):
            report.failed.append((f.path, "changed since it was indexed; re-index first"))
            continue
        try:
            trash(f.path)
        except Exception as exc:  # send2trash raises OSError subclasses and its own
            report.failed.append((f.path, f"could not move to the trash: {exc}"))
            continue
        report.trashed.append(f.path)
        gone.append(f.path)
    if gone:
        catalog.delete_files(gone)
        report.removed_vectors = collect_garbage(catalog, store)
    return report


def _unchanged(f: DuplicateFile) -> bool:
    try:
        st = os.stat(f.path)
    except OSError:
        return False
    return st.st_size == f.size and st.st_mtime_ns == f.mtime_ns
