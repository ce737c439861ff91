"""The duplicate finder: groups of files that hold the same picture, or nearly.

Built from nearest-neighbour queries over the vector index, never an all-pairs loop:
every stored full-image vector asks the index for its ``neighbours`` nearest (in
batches, one Chroma call per batch), pairs at or above the threshold become edges, and a
union-find joins them into groups, strongest edges first, so a group's score is its
weakest link in the strongest chain (a maximum spanning tree). Files that share a
content fingerprint are always one exact group.

Presets (thresholds are cosine similarities of the full-image vectors; ``near`` was
tuned by ``bench/bench_duplicates.py``, see the README):
  exact    identical content, or vectors that are identical up to float noise
  near     resized, re-compressed, lightly edited, cropped by a few per cent
  similar  the same scene or object from another shot (bursts)
  crops    near, plus pictures that are a part (at most half) of another: each image's
           full vector against the region vectors, confirmed by keypoints
           (``regions.verify``), as partial search does

Each group's ``kind`` names its weakest link: ``exact``, ``near``, ``similar`` or
``crop``. Pairs the user marked "not duplicates" (by content, in the catalog) are never
joined.

Threads: :func:`find_duplicates` only reads (catalog and index) and may run on any
thread, e.g. the search pool; it is a generator of :class:`DuplicateProgress` and stops
between batches when ``cancel`` is set. What to do with a group (keep, trash, mark as
not duplicates) is ``duplicate_review.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np

from desktop_app.engine.analysis import KEYPOINTS
from desktop_app.engine.catalog import Catalog, FileRow, VectorRow
from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.regions import Keypoints, keypoints_from_bytes, verify
from desktop_app.engine.store import ReadableStore
from desktop_app.engine.vector_ids import parse_vector_id

log = logging.getLogger(__name__)

BATCH = 256  # query vectors per Chroma call
# "identical vectors" up to float noise; the edits of bench_duplicates all stay below
# (at most 0.9987, a 10 % brighter copy)
EXACT_SIM = 0.999
CROP_MIN_INLIERS = 12
# A crop edge: one image lies ≥ 90 % inside the other and spans at most half of it.
# Photos of one scene taken a little apart (the same backdrop behind different clothes)
# match many keypoints and overlap 60-90 %; in bench_duplicates all 193 such pairs
# spanned ≥ 59 % of the other. Larger crops (trimmed edges) are the near preset's.
CROP_CONTAINED = 0.9
CROP_MAX_SPAN = 0.5


@dataclass(frozen=True)
class Preset:
    name: str
    threshold: float  # minimum similarity for an edge (crops: for a candidate)
    neighbours: int  # nearest neighbours asked per image
    help: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("exact", EXACT_SIM, 4, "the same picture (same file content or pixels)"),
        Preset("near", 0.92, 8, "resized, re-compressed, lightly edited or trimmed copies"),
        Preset("similar", 0.80, 16, "other shots of the same scene or object"),
        Preset("crops", 0.50, 8, "one picture is a part of another (needs region data)"),
    )
}
KINDS = ("exact", "near", "similar", "crop")


@dataclass(frozen=True)
class DuplicateFile:
    path: str
    fingerprint: str
    size: int
    width: int | None
    height: int | None
    mtime_ns: int
    taken: str = ""  # EXIF capture time (FileRow.taken), "" when none

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)

    @classmethod
    def from_row(cls, row: FileRow) -> DuplicateFile:
        return cls(
            row.path,
            row.fingerprint or "",
            row.size,
            row.width,
            row.height,
            row.mtime_ns,
            row.taken or "",
        )


@dataclass
class DuplicateGroup:
    files: list[DuplicateFile]
    score: float  # the weakest link's similarity (1.0 for identical content)
    kind: str  # exact | near | similar | crop

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    @property
    def fingerprints(self) -> list[str]:
        return sorted({f.fingerprint for f in self.files})

    def to_json(self) -> dict[str, Any]:
        return {"paths": self.paths, "score": round(float(self.score), 6), "kind": self.kind}


@dataclass
class DuplicateReport:
    preset: str
    threshold: float
    groups: list[DuplicateGroup]
    images: int  # distinct contents looked at
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "threshold": self.threshold,
            "images": self.images,
            "cancelled": self.cancelled,
            "groups": [g.to_json() for g in self.groups],
        }


@dataclass(frozen=True)
class DuplicateProgress:
    phase: str  # searching | verifying | grouping | done
    done: int
    total: int
    report: DuplicateReport | None = None


@dataclass
class _Edge:
    a: str
    b: str
    sim: float
    kind: str


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def find_duplicates(
    catalog: Catalog,
    store: ReadableStore,
    encoder_id: str,
    preset: str = "near",
    threshold: float | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[DuplicateProgress]:
    """Groups of duplicates among the indexed files; the last value carries the report."""
    if preset not in PRESETS:
        raise DesktopAppError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    t = p.threshold if threshold is None else float(threshold)
    if not -1.0 <= t <= 1.0:
        raise DesktopAppError(f"threshold {t} is outside -1..1")
    cancel = cancel or threading.Event()
    fps = sorted(catalog.fingerprints_with_vectors(encoder_id, "full"))
    files = catalog.paths_for(fps)
    fps = [fp for fp in fps if fp in files]  # contents some file still holds
    if preset == "crops" and fps and not _has_region_data(catalog, encoder_id):
        raise DesktopAppError(
            "the crops preset needs region data: index without --no-regions first"
        )
    marked = catalog.not_duplicate_pairs()
    edges: list[_Edge] = []
    total = len(fps)
    yield DuplicateProgress("searching", 0, total)
    done = 0
    for rows in _batches(catalog.vectors(encoder_id, "full", fps), BATCH):
        if cancel.is_set():
            break
        vectors = np.stack([r.vector for r in rows])
        own = [r.fingerprint for r in rows]
        if preset == "crops":
            edges += _crop_edges(catalog, store, encoder_id, own, vectors, p, t, cancel)
        else:
            hits = store.query(encoder_id, vectors, p.neighbours + 1)
            for fp, row_hits in zip(own, hits, strict=True):
                for h in row_hits:
                    if h.id != fp and h.score >= t:
                        edges.append(_Edge(fp, h.id, h.score, _kind_of(h.score)))
        done += len(rows)
        yield DuplicateProgress("searching", done, total)
    yield DuplicateProgress("grouping", 0, total)
    groups = group_edges(edges, files, marked)
    report = DuplicateReport(preset, t, groups, total, cancelled=cancel.is_set())
    yield DuplicateProgress("done", total, total, report)


def group_edges(
    edges: Sequence[_Edge],
    files: dict[str, list[FileRow]],
    marked: AbstractSet[tuple[str, str]] = frozenset(),
) -> list[DuplicateGroup]:
    """Union-find over the edges, strongest first; contents held by several files are
    exact groups of their own. A group's score is its weakest joining edge, its kind the
    loosest (exact < near < similar < crop). Groups come best score first."""
    uf = UnionFind()
    weakest: dict[str, tuple[float, int]] = {}  # root -> (lowest sim, loosest kind index)
    for e in sorted(edges, key=lambda e: -e.sim):
        if e.a not in files or e.b not in files or tuple(sorted((e.a, e.b))) in marked:
            continue
        ra, rb = uf.find(e.a), uf.find(e.b)
        if ra == rb:
            continue
        links = [weakest.pop(r) for r in (ra, rb) if r in weakest] + [(e.sim, KINDS.index(e.kind))]
        uf.union(ra, rb)
        weakest[uf.find(ra)] = (min(s for s, _ in links), max(k for _, k in links))
    members: dict[str, list[str]] = {}
    for fp in files:
        if fp in uf.parent or len(files[fp]) > 1:
            members.setdefault(uf.find(fp), []).append(fp)
    groups = []
    for root, fps in members.items():
        rows = [r for fp in fps for r in files[fp]]
        if len(rows) < 2:
            continue
        sim, kind = weakest.get(root, (1.0, 0))
        files_ = sorted((DuplicateFile.from_row(r) for r in rows), key=lambda f: f.path)
        groups.append(DuplicateGroup(files_, sim, KINDS[kind]))
    groups.sort(key=lambda g: (-g.score, g.files[0].path))
    return groups


def _kind_of(sim: float) -> str:
    if sim >= EXACT_SIM:
        return "exact"
    return "near" if sim >= PRESETS["near"].threshold else "similar"


def _has_region_data(catalog: Catalog, encoder_id: str) -> bool:
    row = catalog.db.execute(
        "SELECT 1 FROM vectors WHERE encoder=? AND kind='region' LIMIT 1", (encoder_id,)
    ).fetchone()
    return row is not None


def _crop_edges(
    catalog: Catalog,
    store: ReadableStore,
    encoder_id: str,
    own: list[str],
    vectors: np.ndarray,
    p: Preset,
    threshold: float,
    cancel: threading.Event,
) -> list[_Edge]:
    """Near-duplicate edges (full vectors at the ``near`` threshold) plus crop edges: each
    image's full vector against the region vectors (it may be a crop of one) and the full
    vectors; candidates at or above ``threshold`` are checked with keypoints, and a pair
    counts when one image lies inside the other and spans at most half of it (see
    ``CROP_MAX_SPAN``)."""
    near = PRESETS["near"].threshold
    edges: list[_Edge] = []
    cands: dict[str, dict[str, float]] = {fp: {} for fp in own}
    for kind in ("full", "region"):
        hits = store.query(encoder_id, vectors, p.neighbours * (3 if kind == "region" else 1), kind)
        for fp, row_hits in zip(own, hits, strict=True):
            for h in row_hits:
                other = parse_vector_id(h.id)[0]
                if other == fp:
                    continue
                if kind == "full" and h.score >= near:
                    edges.append(_Edge(fp, other, h.score, _kind_of(h.score)))
                elif h.score >= threshold:
                    best = cands[fp]
                    best[other] = max(best.get(other, -1.0), h.score)
    keypoints = _KeypointCache(catalog, set(own) | {o for c in cands.values() for o in c})
    for fp in own:
        if cancel.is_set():
            break
        query = keypoints.get(fp)
        if query is None:
            continue
        for other, sim in sorted(cands[fp].items(), key=lambda kv: -kv[1])[: p.neighbours]:
            cand = keypoints.get(other)
            v = verify(query, cand, min_inliers=CROP_MIN_INLIERS) if cand is not None else None
            if v is None:
                continue
            inside = max(v.cand_coverage, v.query_coverage) >= CROP_CONTAINED
            if inside and min(v.cand_coverage, v.query_coverage) <= CROP_MAX_SPAN:
                strength = 0.75 * min(v.inliers, 25) / 25
                edges.append(_Edge(fp, other, 0.8 + 0.2 * (strength + 0.25 * sim), "crop"))
    return edges


class _KeypointCache:
    """Keypoint blobs of some contents, read in one go, parsed on first use."""

    def __init__(self, catalog: Catalog, fingerprints: set[str]) -> None:
        self._blobs = catalog.features(KEYPOINTS, sorted(fingerprints))
        self._parsed: dict[str, Keypoints | None] = {}

    def get(self, fp: str) -> Keypoints | None:
        if fp not in self._parsed:
            blob = self._blobs.get(fp)
            try:
                self._parsed[fp] = keypoints_from_bytes(blob) if blob else None
            except ValueError:
                log.warning("damaged keypoint blob for %s", fp)
                self._parsed[fp] = None
        return self._parsed[fp]


def _batches(rows: Iterator[VectorRow], n: int) -> Iterator[list[VectorRow]]:
    batch: list[VectorRow] = []
    for r in rows:
        batch.append(r)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def last_report(progress: Iterator[DuplicateProgress]) -> DuplicateReport:
    """Run a :func:`find_duplicates` generator to the end; its report."""
    report = None
    for p in progress:
        report = p.report or report
    assert report is not None
    return report
