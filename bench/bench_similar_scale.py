"""Find-similar at 100,000 indexed images, through the real engine (embedded store).

    nice python bench/bench_similar_scale.py [--n 100000] [--queries 50] [--dir DIR]

Embedding 100,000 photos takes hours here, and find-similar never embeds: it reads the
file's stored vectors and asks the store. So the library is filled at the store level:
``--n`` full-image vectors (efficientnet-lite0's 1280 dimensions) shaped like real ones
(real vectors from the bench_search 10k library when it exists, each plus noise and
re-normalised, as bench_store_scale does; else seeded random ones), each with a catalog
file row, written through the catalog and ``VectorStore`` the indexer uses. Built once
under ``--dir`` and reused. Then ``Library.similar_stages(path)`` is timed on ``--queries``
indexed files: the full stage (what the window shows first; target ≤ 20 ms p50) and all
stages (only the full stage exists without region vectors). Full vectors only: a 10k
library with regions holds 100k region vectors, which bench_search measures.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import OUT, median, percentile, report  # noqa: E402

DIM = 1280
STEP = 1000  # files per catalog transaction and store upsert


def seed_vectors(n10k: Path) -> np.ndarray:
    catalog = n10k / "home" / "data" / "catalog.sqlite3"
    if catalog.exists():
        db = sqlite3.connect(catalog)
        blobs = [
            b for (b,) in db.execute("SELECT vector FROM vectors WHERE kind='full' LIMIT 20000")
        ]
        db.close()
        vecs = [np.frombuffer(b, np.float32) for b in blobs]
        if vecs and len(vecs[0]) == DIM:
            print(f"seed: {len(vecs)} real vectors from {catalog}")
            return np.stack(vecs)
    print("seed: random vectors (no 10k library)")
    return np.random.default_rng(0).standard_normal((1000, DIM)).astype(np.float32)


def synthetic(seed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    v = seed[rng.integers(0, len(seed), n)]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    v = v + rng.standard_normal(v.shape).astype(np.float32) * (0.35 / np.sqrt(DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def fill(lib: object, n: int, root: Path, seed: np.ndarray) -> None:
    from desktop_app.engine.analysis import Analysis
    from desktop_app.engine.catalog import FileRow, VectorRow
    from desktop_app.engine.indexer import write_to_store

    catalog = lib.catalog  # type: ignore[attr-defined]
    have = len(catalog.fingerprints_with_vectors(lib.encoder_id))  # type: ignore[attr-defined]
    rng = np.random.default_rng(have + 1)
    started = time.perf_counter()
    if str(root) not in catalog.roots():
        catalog.add_root(str(root))
    while have < n:
        step = min(STEP, n - have)
        vecs = synthetic(seed, step, rng)
        fps = [f"{have + i:064x}" for i in range(step)]
        analyses = [
            Analysis(fp, [VectorRow(fp, "full", 0, None, v)])
            for fp, v in zip(fps, vecs, strict=True)
        ]
        rows = [
            FileRow(str(root / f"{fp[-8:]}.jpg"), str(root), 1000, 0, fp, 800, 600, "ok", None)
            for fp in fps
        ]
        with catalog.transaction() as db:
            for a in analyses:
                catalog.put_vectors(lib.encoder_id, a.vectors, db)  # type: ignore[attr-defined]
            catalog.put_files(rows, db)
        write_to_store(lib.store, lib.encoder_id, analyses)  # type: ignore[attr-defined]
        have += step
        el = time.perf_counter() - started
        print(f"  {have}/{n} vectors ({el:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--dir", type=Path, default=OUT / "similar-scale")
    ap.add_argument("--seed-library", type=Path, default=OUT / "lib10000")
    args = ap.parse_args()
    os.environ["DESKTOP_APP_HOME"] = str(args.dir / f"home-{args.n}")
    from desktop_app.engine.library import Library
    from desktop_app.engine.settings import OFFLINE_MODEL, Settings

    root = args.dir / "photos"  # the files are never opened: find-similar reads the index
    settings = Settings(model=OFFLINE_MODEL, regions_enabled=False)
    with Library.open(settings=settings, model=OFFLINE_MODEL) as lib:
        fill(lib, args.n, root, seed_vectors(args.seed_library))
        fps = sorted(lib.catalog.fingerprints_with_vectors(lib.encoder_id))
        rng = np.random.default_rng(7)
        picks = [fps[i] for i in rng.choice(len(fps), args.queries, replace=False)]
        paths = [root / f"{fp[-8:]}.jpg" for fp in picks]
        lib.similar_stages(paths[0], top_k=50)[0]()  # load the HNSW index
        full_ms, all_ms, found_self = [], [], 0
        for p in paths:
            t0 = time.perf_counter()
            stages = lib.similar_stages(p, top_k=50)
            results = stages[0]()
            full_ms.append((time.perf_counter() - t0) * 1000)
            for later in stages[1:]:
                results = later()
            all_ms.append((time.perf_counter() - t0) * 1000)
            found_self += bool(results) and results[0].path == str(p)
        count = lib.store.count(lib.encoder_id)
    rows = [
        ("indexed images (store vectors)", count, f"= {args.n}"),
        ("queries", len(paths), ""),
        ("find-similar full stage p50 ms", median(full_ms), "≤ 20"),
        ("find-similar full stage p90 ms", percentile(full_ms, 90), ""),
        ("find-similar all stages p50 ms", median(all_ms), ""),
        ("find-similar itself first", f"{found_self}/{len(paths)}", "all"),
        ("load (1-min avg)", round(os.getloadavg()[0], 2), "shared machine"),
    ]
    report(f"bench_similar_scale_{args.n}", rows)


if __name__ == "__main__":
    main()
