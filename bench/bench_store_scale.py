"""Chroma alone at growing sizes: server memory per vector and query time, to say when a
library should move to a server and what a million images need (docs/scaling.md).

    python bench/bench_store_scale.py [--sizes 50000,100000,200000] [--dim 1280]

A ``chroma run`` server on 127.0.0.1 (fresh directory) gets one collection created by
the app's own store code (cosine HNSW, the app's settings) and is filled in steps. The
vectors are synthetic but shaped like real ones: real efficientnet-lite0 vectors from
the bench_server library when it exists (else random ones), each plus Gaussian noise
and re-normalised, so the HNSW graph is not the uniform-random worst case. At each size:
the server's resident memory after queries have loaded the index, its folder on disk,
and the latency of the app's two query shapes (2 vectors, k = 58 for the full stage;
2 vectors, k = 150 for the region stage), through the HTTP client.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_server import free_port, rss_mb, start_server  # noqa: E402
from common import OUT, median, percentile, report  # noqa: E402


def seed_vectors(dim: int) -> np.ndarray:
    for catalog in sorted(OUT.glob("server*/embedded/catalog.sqlite3")):
        db = sqlite3.connect(catalog)
        blobs = [b for (b,) in db.execute("SELECT vector FROM vectors LIMIT 20000")]
        db.close()
        vecs = np.stack([np.frombuffer(b, np.float32) for b in blobs]) if blobs else None
        if vecs is not None and vecs.shape[1] == dim:
            print(f"seed: {len(vecs)} real vectors from {catalog}")
            return vecs
    print("seed: random vectors (no bench_server library of this dimension)")
    return np.random.default_rng(0).standard_normal((1000, dim)).astype(np.float32)


def synthetic(seed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    base = seed[rng.integers(0, len(seed), n)]
    v = base / np.linalg.norm(base, axis=1, keepdims=True)
    v = v + rng.standard_normal(v.shape).astype(np.float32) * (0.35 / np.sqrt(v.shape[1]))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50000,100000,200000")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from desktop_app.engine.remote import RemoteVectorStore

    base = OUT / "store-scale"
    server_dir = base / "chroma-server"
    shutil.rmtree(server_dir, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_server(server_dir, port, base / "chroma.log")
    rng = np.random.default_rng(1)
    seed = seed_vectors(args.dim)
    rows: list[tuple[str, object, str]] = []
    points = []
    store = RemoteVectorStore(f"http://127.0.0.1:{port}")
    try:
        idle = rss_mb(proc.pid)
        have = 0
        for size in sizes:
            started = time.perf_counter()
            while have < size:
                step = min(2000, size - have)
                vecs = synthetic(seed, step, rng)
                ids = [f"v{have + i}" for i in range(step)]
                store.upsert("scale", ids, vecs, [{"fp": i} for i in ids])
                have += step
            insert_s = time.perf_counter() - started
            queries = [synthetic(seed, 2, rng) for _ in range(args.queries)]
            store.query("scale", queries[0], 58)  # load the index
            timings = {}
            for k in (58, 150):
                ms = []
                for q in queries:
                    t0 = time.perf_counter()
                    store.query("scale", q, k)
                    ms.append((time.perf_counter() - t0) * 1000)
                timings[k] = ms
            rss = rss_mb(proc.pid)
            disk = folder_mb(server_dir)
            points.append((size, rss, disk))
            print(f"{size}: rss {rss:.0f} MB, disk {disk:.0f} MB, insert {insert_s:.0f} s")
            rows += [
                (f"{size}: server RSS MB", rss, f"idle {idle:.0f}"),
                (f"{size}: disk MB", disk, ""),
                (f"{size}: query k=58 median ms", median(timings[58]), ""),
                (f"{size}: query k=58 p90 ms", percentile(timings[58], 90), ""),
                (f"{size}: query k=150 median ms", median(timings[150]), ""),
                (
                    f"{size}: insert vectors/s",
                    (size - (points[-2][0] if len(points) > 1 else 0)) / insert_s,
                    "",
                ),
            ]
    finally:
        store.close()
        proc.terminate()
        proc.wait(timeout=60)
    (n0, r0, d0), (n1, r1, d1) = points[0], points[-1]
    per_vec_kb = (r1 - r0) * 1024 / (n1 - n0) if n1 > n0 else r1 * 1024 / n1
    disk_kb = (d1 - d0) * 1000 / (n1 - n0) if n1 > n0 else d1 * 1000 / n1
    rows += [
        ("dimension", args.dim, ""),
        ("RSS per added vector KB (slope)", per_vec_kb, f"raw floats {args.dim * 4 / 1024:.1f}"),
        ("disk per added vector KB (slope)", disk_kb, ""),
        ("extrapolated RSS at 1M vectors GB", per_vec_kb * 1e6 / 1024**2, "linear, not measured"),
        ("extrapolated RSS at 10M vectors GB", per_vec_kb * 1e7 / 1024**2, "linear, not measured"),
    ]
    report(f"bench_store_scale_{args.dim}", rows, {"points": points})


if __name__ == "__main__":
    main()
