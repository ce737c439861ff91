"""Indexing pipeline against its own stages: is end-to-end limited only by the slowest?

    nice python bench/bench_pipeline.py [--photos DIR] [--n 300] [--no-regions]
                                        [--model efficientnet-lite0] [--rounds 2]
                                        [--window-writes] [--pipeline-only]

On the same N real photos (the clothing set by default; ``--photos`` a folder of large
photos, e.g. the wallpapers of ``../shared/scripts/fetch-wallpapers.sh``), each stage of
an index run is timed alone, with the engine's own functions and the resources the
pipeline gives it:

  hash      ``fingerprint_file`` (the loader threads' first step)
  decode    ``load_image`` at the analyser's decode side (Pillow ``draft`` for JPEGs)
  prepare   ``Analyser.prepare``: thumbnail, and with regions ORB keypoints and the
            colour copy
  loader    hash + decode + prepare in the indexer's loader pool (``LOADER_THREADS``):
            the pipeline's producer stage
  encoder   ``Analyser.embed`` on full batches of prepared images (full vectors, and
            with regions the one-pass region vectors): the consumer stage
  write     one catalog transaction + the vector-store upsert per batch

then the real ``Library.index`` on a fresh data dir (encoder loaded and warmed first, as
the window's worker does before its first job), best of the same rounds. The store is
written as ``desktop-app index`` writes it (large chunks: no window in the process);
``--window-writes`` uses the window's small ones. ``--pipeline-only`` skips the stages
and reports every round of the real run (images/s, CPU per image): the steadier way to
compare two versions of the code, run in turns. Reported: images/s of each stage, of the
pipeline, and pipeline ÷ slowest stage (target ≥ 0.85). hash/decode/prepare are also
timed on one thread, so their CPU cost per image is visible. Stages alone each get the
whole machine; in the pipeline they share it, so on 2 cores the ratio also says how much
CPU the non-slowest stages take from the slowest. Each stage's CPU per image (process CPU
of its fastest round) and the pipeline's cores busy show it: on a machine whose encoder
runs on the same cores, end to end is bound by the sum of the stages' CPU over the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import CLOTHING, copy_photos, real_photos, report  # noqa: E402


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


CPU: dict[str, float] = {}  # process CPU seconds of the fastest round, by stage


def best_of(rounds: int, fn: Callable[[], Any], name: str = "") -> tuple[float, Any]:
    """The fastest of ``rounds`` runs (the machine is shared: the least disturbed run is
    the closest to the stage's own cost) and the last result; the fastest run's CPU time
    is kept in ``CPU[name]``."""
    best, out = float("inf"), None
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        out = fn()
        took = time.perf_counter() - started
        if took < best:
            best = took
            if name:
                CPU[name] = time.process_time() - cpu
    return best, out


def pooled(fn: Callable[[Any], Any], items: Sequence[Any], threads: int) -> list[Any]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, items))


def cached_photos(args: argparse.Namespace, work: Path) -> list[Path]:
    """The N photos copied under ``work``, each read once: the page cache holds every
    file, as it does in every round."""
    files = copy_photos(real_photos(args.n, source=args.photos), work / "photos")
    for f in files:
        f.read_bytes()
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=CLOTHING / "train")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--no-regions", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--window-writes",
        action="store_true",
        help="write in the window's small store chunks (default: the command line's)",
    )
    ap.add_argument(
        "--pipeline-only",
        action="store_true",
        help="only the real index run, every round reported (A/B of two code versions)",
    )
    args = ap.parse_args()
    regions = not args.no_regions
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    from desktop_app.engine.headless import headless

    measure = run_pipeline_only if args.pipeline_only else run
    # as `desktop-app index` runs (no window here), unless the window's writes are asked for
    arranged = contextlib.nullcontext() if args.window_writes else headless()
    try:
        with arranged:
            rows, extra = measure(args, work, regions)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    name = "bench_pipeline" + ("_only" if args.pipeline_only else "")
    name += "" if regions else "_noregions"
    if args.photos != CLOTHING / "train":
        name += "_" + args.photos.name
    report(name, rows, extra)


def run(
    args: argparse.Namespace, work: Path, regions: bool
) -> tuple[list[tuple[str, Any, str]], dict[str, Any]]:
    os.environ["DESKTOP_APP_HOME"] = str(work / "home-stages")
    from desktop_app.engine import indexer as indexer_mod
    from desktop_app.engine.fingerprint import fingerprint_file
    from desktop_app.engine.imageio import load_image
    from desktop_app.engine.indexer import file_row, write_to_store
    from desktop_app.engine.library import Library
    from desktop_app.engine.scanner import FoundFile
    from desktop_app.engine.settings import Settings

    files = cached_photos(args, work)
    n = len(files)
    threads = indexer_mod.LOADER_THREADS
    settings = Settings(model=args.model, regions_enabled=regions)
    lib = Library.open(settings=settings, model=args.model)
    analyser = lib.make_analyser(lib.encoder, regions)
    encoder = analyser.encoder
    side = analyser.decode_side
    encoder.embed_images(
        [load_image(f, max_side=side).image for f in files[: encoder.batch_size]]
    )  # warm

    def thumbs_cleared() -> None:
        shutil.rmtree(lib.dirs.thumbnails, ignore_errors=True)

    t: dict[str, float] = {}
    t["hash 1 thread"], fps = best_of(args.rounds, lambda: [fingerprint_file(f) for f in files])
    t["decode 1 thread"], loaded = best_of(
        args.rounds, lambda: [load_image(f, max_side=side) for f in files]
    )

    def prepare_all() -> list[Any]:
        thumbs_cleared()
        return [analyser.prepare(fp, li) for fp, li in zip(fps, loaded, strict=True)]

    t["prepare 1 thread"], prepared = best_of(args.rounds, prepare_all)

    def loader_one(i: int) -> Any:
        li = load_image(files[i], max_side=side)
        return analyser.prepare(fingerprint_file(files[i]), li)

    def loader_all() -> list[Any]:
        thumbs_cleared()
        return pooled(loader_one, list(range(n)), threads)

    loader_key = f"loader ({threads} threads)"
    t[loader_key], _ = best_of(args.rounds, loader_all, loader_key)
    bs = encoder.batch_size
    batches = [prepared[i : i + bs] for i in range(0, n, bs)]
    t["encoder"], analyses = best_of(
        args.rounds, lambda: [a for b in batches for a in analyser.embed(b)], "encoder"
    )
    t["encoder full vectors only"], _ = best_of(
        args.rounds, lambda: [encoder.embed_images([p.image for p in b]) for b in batches]
    )
    found = [FoundFile(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]

    def write_all() -> None:
        for i in range(0, n, bs):
            part = analyses[i : i + bs]
            rows = [
                file_row(fd, str(work / "photos"), p.fingerprint, (p.width, p.height))
                for fd, p in zip(found[i : i + bs], prepared[i : i + bs], strict=True)
            ]
            with lib.catalog.transaction() as db:
                for a in part:
                    lib.catalog.put_vectors(lib.encoder_id, a.vectors, db)
                    for kind, data in a.features.items():
                        lib.catalog.put_feature(a.fingerprint, kind, data, db)
                lib.catalog.put_files(rows, db)
            write_to_store(lib.store, lib.encoder_id, part)

    t["write (catalog + store)"], _ = best_of(args.rounds, write_all, "write (catalog + store)")
    lib.close()

    pipeline_s, embedded = float("inf"), 0
    for i in range(args.rounds):  # best of the same rounds as each stage alone
        took, embedded, cpu = pipeline(work / f"home-pipeline-{i}", settings, args.model, files)
        if took < pipeline_s:
            pipeline_s, CPU["pipeline"] = took, cpu
    return summarise(t, n, threads, pipeline_s, embedded, args, regions, encoder.describe())


def run_pipeline_only(
    args: argparse.Namespace, work: Path, regions: bool
) -> tuple[list[tuple[str, Any, str]], dict[str, Any]]:
    from desktop_app.engine.settings import Settings

    files = cached_photos(args, work)
    settings = Settings(model=args.model, regions_enabled=regions)
    rows: list[tuple[str, Any, str]] = [
        ("photos", len(files), ""),
        ("model", args.model, ""),
        ("regions", regions, ""),
    ]
    rounds = []
    for i in range(args.rounds):
        took, embedded, cpu = pipeline(work / f"home-{i}", settings, args.model, files)
        rounds.append({"seconds": took, "embedded": embedded, "cpu_seconds": cpu})
        rows.append((f"round {i + 1}: images/s", round(rate(embedded, took), 1), ""))
        rows.append((f"round {i + 1}: CPU per image, ms", round(1000 * cpu / embedded, 1), ""))
        rows.append((f"round {i + 1}: cores busy", round(cpu / took, 2), ""))
    rows.append(("load (1-min avg) at end", round(os.getloadavg()[0], 2), "shared machine"))
    return rows, {"rounds": rounds, "photos_dir": str(args.photos)}


def pipeline(home: Path, settings: Any, model: str, files: list[Path]) -> tuple[float, int, float]:
    """The real index run on a fresh data dir, the encoder loaded and warmed first:
    (seconds, images embedded, process CPU seconds)."""
    from desktop_app.engine.imageio import load_image
    from desktop_app.engine.library import Library

    os.environ["DESKTOP_APP_HOME"] = str(home)
    with Library.open(settings=settings, model=model) as lib:
        lib.encoder.embed_images([load_image(files[0], max_side=224).image])
        started, cpu = time.perf_counter(), time.process_time()
        summary = None
        for progress in lib.index([files[0].parent]):
            summary = progress.summary or summary
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    if summary is None or summary.failed:
        raise RuntimeError(f"the index run failed: {summary}")
    return seconds, summary.embedded, cpu


def summarise(
    t: dict[str, float],
    n: int,
    threads: int,
    pipeline_s: float,
    embedded: int,
    args: argparse.Namespace,
    regions: bool,
    describe: str,
) -> tuple[list[tuple[str, Any, str]], dict[str, Any]]:
    rates = {k: rate(n, s) for k, s in t.items()}
    # the pipeline's stages: the loader pool (hash+decode+prepare), the encoder, the writes
    stages = {
        k: rates[k] for k in (f"loader ({threads} threads)", "encoder", "write (catalog + store)")
    }
    slowest = min(stages, key=lambda k: stages[k])
    end_to_end = rate(embedded, pipeline_s)
    rows: list[tuple[str, Any, str]] = [
        ("photos", n, ""),
        ("encoder", describe, ""),
        ("regions", regions, ""),
    ]
    for k, r in rates.items():
        rows.append((f"stage {k}: images/s", round(r, 1), "pipeline stage" if k in stages else ""))
    rows += [
        ("slowest stage", slowest, ""),
        ("pipeline (Library.index): images/s", round(end_to_end, 1), ""),
        ("pipeline ÷ slowest stage", round(end_to_end / stages[slowest], 3), "≥ 0.85"),
        (
            "pipeline ÷ serial sum of stages",
            round(end_to_end * sum(1 / r for r in stages.values()), 3),
            "> 1 means stages overlap",
        ),
        ("load (1-min avg) at end", round(os.getloadavg()[0], 2), "shared machine"),
    ]
    # CPU per image: alone, each stage keeps some cores idle; in the pipeline the stages
    # share them, so on a CPU-only machine end to end is bound by the sum of the stages'
    # CPU, spread over every core.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for k, c in CPU.items():
        label = f"CPU per image, {k}" + ("" if k == "pipeline" else " alone")
        rows.append((label + ": ms", round(1000 * c / n, 1), ""))
    if "pipeline" in CPU:
        rows.append(("pipeline: cores busy", round(CPU["pipeline"] / pipeline_s, 2), f"of {cpus}"))
        if "encoder" in CPU:
            rows.append(
                (
                    "encoder's share of the pipeline's CPU",
                    round(CPU["encoder"] / CPU["pipeline"], 3),
                    "",
                )
            )
    extra = {
        "seconds": t,
        "pipeline_seconds": pipeline_s,
        "photos_dir": str(args.photos),
        "cpus": os.cpu_count(),
        "loader_threads": threads,
        "cpu_seconds": dict(CPU),
    }
    return rows, extra


if __name__ == "__main__":
    main()
