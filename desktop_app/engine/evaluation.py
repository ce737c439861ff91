"""Retrieval metrics on a labelled folder: how well does an encoder find the same kind
of picture?

The folder's images are labelled by the folder that holds them (``FOLDER/dress/a.jpg``
and ``FOLDER/train/dress/a.jpg`` are both "dress"; files directly in FOLDER have no
label and are only distractors). Everything is indexed into a temporary library, then
every labelled image is a query (itself excluded) against the full-image vectors — the
search's first stage. Region data is not built: partial matching confirms crops of one
photo, it does not judge whether two photos show the same kind of thing, so it would
multiply the indexing time without moving these figures.

Metrics per query, with binary relevance (same label) over the ranked results:
  RR        1 / rank of the first relevant result within the top ``depth`` (0 if none)
  P@k       relevant results in the top k / k
  R@k       relevant results in the top k / relevant images in the library
  F1@k      harmonic mean of that query's P@k and R@k (0 when both are 0)
  NDCG@k    DCG@k / ideal DCG@k, DCG = sum over ranks i ≤ k of rel_i / log2(i + 1)
Reported as the mean over queries (MRR for RR), overall and per label. A query whose
label has no other image is skipped (nothing can be relevant) and counted.

Threads: :func:`evaluate` is a generator of :class:`EvalProgress`; the caller's thread
is the temporary library's only writer. The metric functions are pure.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.paths import AppDirs
from desktop_app.engine.scanner import scan
from desktop_app.engine.settings import DEFAULT_FILE_TYPES, Settings

QUERY_BATCH = 256
METRICS = ("mrr", "ndcg", "precision", "recall", "f1")


# -- pure metric functions -------------------------------------------------------------
def reciprocal_rank(relevant: Sequence[bool]) -> float:
    for i, rel in enumerate(relevant, start=1):
        if rel:
            return 1.0 / i
    return 0.0


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    return sum(bool(r) for r in relevant[:k]) / k


def recall_at_k(relevant: Sequence[bool], k: int, n_relevant: int) -> float:
    if n_relevant <= 0:
        raise ValueError("recall needs at least one relevant item")
    return sum(bool(r) for r in relevant[:k]) / n_relevant


def f1_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ndcg_at_k(relevant: Sequence[bool], k: int, n_relevant: int) -> float:
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(relevant[:k], start=1) if r)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, n_relevant) + 1))
    return dcg / ideal if ideal else 0.0


def query_metrics(relevant: Sequence[bool], k: int, n_relevant: int) -> dict[str, float]:
    """Every metric for one query's ranked relevance list."""
    p = precision_at_k(relevant, k)
    r = recall_at_k(relevant, k, n_relevant)
    return {
        "mrr": reciprocal_rank(relevant),
        "ndcg": ndcg_at_k(relevant, k, n_relevant),
        "precision": p,
        "recall": r,
        "f1": f1_score(p, r),
    }


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {m: float("nan") for m in METRICS}
    return {m: sum(r[m] for r in rows) / len(rows) for m in METRICS}


# -- the labelled folder ---------------------------------------------------------------
def labelled_images(folder: Path, extensions: Sequence[str] = DEFAULT_FILE_TYPES) -> dict[str, str]:
    """path -> label (the name of the folder holding it), for images below ``folder``."""
    root = folder.resolve()
    out: dict[str, str] = {}
    for found in scan(root, extensions):
        parent = Path(found.path).parent
        if parent != root:
            out[found.path] = parent.name
    return out


# -- the run ---------------------------------------------------------------------------
@dataclass
class EvalReport:
    model: str
    k: int
    depth: int
    images: int  # indexed
    queries: int
    skipped: int  # labelled images with no other image of their label
    failed: list[tuple[str, str]]
    overall: dict[str, float]
    per_label: dict[str, dict[str, float]]  # each with "queries"
    index_seconds: float
    query_seconds: float

    def to_json(self) -> dict[str, Any]:
        def rounded(d: dict[str, float]) -> dict[str, float]:
            return {key: round(v, 4) if isinstance(v, float) else v for key, v in d.items()}

        return {
            "model": self.model,
            "k": self.k,
            "depth": self.depth,
            "images": self.images,
            "queries": self.queries,
            "skipped": self.skipped,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "overall": rounded(self.overall),
            "per_label": {label: rounded(m) for label, m in sorted(self.per_label.items())},
            "index_seconds": round(self.index_seconds, 2),
            "query_seconds": round(self.query_seconds, 2),
        }


@dataclass(frozen=True)
class EvalProgress:
    phase: str  # indexing | querying | done
    done: int
    total: int
    report: EvalReport | None = None


@dataclass
class _Corpus:
    labels: dict[str, str]  # indexed path -> label ("" for unlabelled distractors)
    by_fp: dict[str, list[str]] = field(default_factory=dict)  # content -> indexed paths


def evaluate(
    folder: Path | str,
    model: str,
    k: int = 10,
    cancel: threading.Event | None = None,
    work_dir: Path | None = None,
) -> Iterator[EvalProgress]:
    """Index ``folder`` into a temporary library with ``model`` and score every labelled
    image as a query. ``work_dir`` keeps the library there instead (for repeated runs)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DesktopAppError(f"{folder} is not a folder")
    if k < 1:
        raise DesktopAppError("--k must be at least 1")
    labels = labelled_images(folder)
    if len(set(labels.values())) < 2:
        raise DesktopAppError(
            f"{folder} needs images in at least two sub-folders (the sub-folders are the labels)"
        )
    cancel = cancel or threading.Event()
    with tempfile.TemporaryDirectory(prefix="desktop-app-eval-") as tmp:
        root = work_dir or Path(tmp)
        yield from _run(folder, labels, model, k, root, cancel)


def _run(
    folder: Path,
    labels: dict[str, str],
    model: str,
    k: int,
    root: Path,
    cancel: threading.Event,
) -> Iterator[EvalProgress]:
    from desktop_app.engine.library import Library

    dirs = AppDirs(root / "data", root / "config", root / "cache", root / "logs")
    settings = Settings(model=model, regions_enabled=False)
    started = time.perf_counter()
    with Library(dirs, settings, model=model) as lib:
        summary = None
        for p in lib.index([folder], cancel=cancel):
            summary = p.summary or summary
            yield EvalProgress("indexing", p.done, p.total)
        if cancel.is_set() or summary is None or summary.cancelled:
            return
        index_seconds = time.perf_counter() - started
        corpus = _corpus(lib, labels)
        started = time.perf_counter()
        depth = max(k, 100)
        per_query: list[tuple[str, dict[str, float]]] = []
        queries = [fp for fp in corpus.by_fp if any(corpus.labels[p] for p in corpus.by_fp[fp])]
        total = sum(len(corpus.by_fp[fp]) for fp in queries)
        counts: dict[str, int] = {}
        for label in corpus.labels.values():
            counts[label] = counts.get(label, 0) + 1
        skipped = 0
        for batch in _chunks(queries, QUERY_BATCH):
            if cancel.is_set():
                return
            for path, relevant in _rank(lib, corpus, batch, depth):
                n_relevant = counts[corpus.labels[path]] - 1
                if n_relevant == 0:
                    skipped += 1
                    continue
                per_query.append((corpus.labels[path], query_metrics(relevant, k, n_relevant)))
            yield EvalProgress("querying", len(per_query) + skipped, total)
        by_label: dict[str, list[dict[str, float]]] = {}
        for label, m in per_query:
            by_label.setdefault(label, []).append(m)
        report = EvalReport(
            model=lib.encoder_id,
            k=k,
            depth=depth,
            images=len(corpus.labels),
            queries=len(per_query),
            skipped=skipped,
            failed=list(summary.failed),
            overall=mean_metrics([m for _, m in per_query]),
            per_label={
                label: {**mean_metrics(rows), "queries": len(rows)}
                for label, rows in by_label.items()
            },
            index_seconds=index_seconds,
            query_seconds=time.perf_counter() - started,
        )
        yield EvalProgress("done", total, total, report)


def _corpus(lib: Any, labels: dict[str, str]) -> _Corpus:
    corpus = _Corpus({})
    for root in lib.catalog.roots():
        for path, row in lib.catalog.files_under(root).items():
            if row.ok and row.fingerprint:
                corpus.labels[path] = labels.get(path, "")
                corpus.by_fp.setdefault(row.fingerprint, []).append(path)
    return corpus


def _rank(
    lib: Any, corpus: _Corpus, fps: list[str], depth: int
) -> Iterator[tuple[str, list[bool]]]:
    """(query path, relevance of its ranked results) for every labelled file holding
    one of ``fps``: the store's nearest contents, expanded to their files, the query's
    own file left out (a copy of it at another path counts like any other result)."""
    encoder_id = lib.encoder_id
    rows = {r.fingerprint: r.vector for r in lib.catalog.vectors(encoder_id, "full", fps)}
    present = [fp for fp in fps if fp in rows]
    vectors = np.stack([rows[fp] for fp in present])
    # a few more than depth: the query's own content comes back, maybe at several paths
    hits = lib.store.query(
        encoder_id, vectors, depth + 1 + len(max(corpus.by_fp.values(), key=len))
    )
    for fp, row_hits in zip(present, hits, strict=True):
        ranked = [p for h in row_hits for p in sorted(corpus.by_fp.get(h.id, []))]
        for path in corpus.by_fp[fp]:
            label = corpus.labels[path]
            if not label:
                continue
            results = [p for p in ranked if p != path][:depth]
            yield path, [corpus.labels[p] == label for p in results]


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
