"""Drop-to-results latency at 10,000 indexed images, in the real window.

    python bench/bench_search.py [--n 10000] [--queries 30] [--no-regions] [--base DIR]
    python bench/bench_search.py --engine [--queries 20] [--base DIR]

``--engine``: search by a new image through the engine alone, with scene queries of 0.3,
3 and 12 megapixels (``--queries`` of each; an indexed photo pasted into a wallpaper):
full results and all stages, embedding included (targets ≤ 150 ms and ≤ 500 ms p50,
≤ 800 ms for 12 MP).

The library (real photos plus edited copies, see dataset.py) is built and indexed once
under bench/out/ and reused. Each query is a held-out photo dropped on the drop zone as
a file URL, the way a file manager drops it. Reported per query:
  results:  drop -> full-image results in the model (query embedded and searched)
  painted:  drop -> the first screen of thumbnails loaded and painted
  complete: drop -> partial-region matches merged in too (with regions on)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import OUT, median, percentile, report  # noqa: E402
from dataset import build_library  # noqa: E402


def ensure_index(lib_dir: Path, regions: bool) -> None:
    from desktop_app.engine.library import Library
    from desktop_app.engine.settings import OFFLINE_MODEL, Settings

    settings = Settings(model=OFFLINE_MODEL, regions_enabled=regions)
    with Library.open(settings=settings) as lib:
        backfill(lib, regions)
        started = time.perf_counter()
        last = 0.0
        for p in lib.index([lib_dir]):
            now = time.perf_counter()
            if now - last > 30 and p.total:
                last = now
                print(f"  indexing {p.done}/{p.total} ({now - started:.0f} s)", flush=True)
            if p.summary:
                s = p.summary
                print(
                    f"  index: {s.embedded} embedded, {s.unchanged} unchanged in {s.seconds:.0f} s"
                )


def backfill(lib: object, regions: bool) -> None:
    """The indexer writes grid thumbnails and (regions on) colour copies for the images it
    embeds; a library indexed before it did gets them here, with the same functions, once,
    instead of being re-embedded."""
    from desktop_app.engine.analysis import TINY
    from desktop_app.engine.colour import TINY_SIDE, tiny_to_bytes
    from desktop_app.engine.imageio import load_image
    from desktop_app.engine.thumbs import THUMB_SIDE, save_thumbnail, thumbnail_path

    catalog = lib.catalog  # type: ignore[attr-defined]
    from desktop_app.engine.catalog import decode_path  # paths are stored as bytes

    rows = [
        (decode_path(p), fp)
        for p, fp in catalog.db.execute("SELECT path, fingerprint FROM files WHERE status='ok'")
    ]
    if not rows:
        return
    cache = lib.dirs.thumbnails  # type: ignore[attr-defined]
    have_tiny = catalog.fingerprints_with_feature(TINY) if regions else None
    written = [0, 0]
    with catalog.transaction() as db:
        for path, fp in rows:
            need_thumb = not thumbnail_path(cache, fp).exists()
            need_tiny = have_tiny is not None and fp not in have_tiny
            if not (need_thumb or need_tiny):
                continue
            loaded = load_image(path, max_side=max(THUMB_SIDE, TINY_SIDE))
            if need_thumb:
                save_thumbnail(loaded.image, cache, fp)
                written[0] += 1
            if need_tiny:
                tiny = tiny_to_bytes(loaded.image, loaded.width, loaded.height)
                catalog.put_feature(fp, TINY, tiny, db)
                have_tiny.add(fp)
                written[1] += 1
    if any(written):
        print(f"  backfilled: {written[0]} thumbnails, {written[1]} colour copies")


QUERY_MEGAPIXELS = (0.3, 3.0, 12.0)
WALLPAPERS = (Path("/work/perfdata/wallpapers"), OUT / "wallpapers")


def scene_queries(base: Path, library: Path, per_size: int) -> dict[float, list[Path]]:
    """Per size in ``QUERY_MEGAPIXELS``: JPEG photos of that many megapixels, each a
    real scene (a wallpaper when there are some, else a held-out photo enlarged) with an
    indexed photo pasted in at 40 % of its width, the way a photo of a screen or a
    printed page shows a stored picture inside a larger scene. Made once."""
    import random

    from PIL import Image

    out: dict[float, list[Path]] = {}
    walls = next(
        (sorted(w.rglob("*.jpg")) for w in WALLPAPERS if w.is_dir() and any(w.rglob("*.jpg"))),
        [],
    )
    originals = sorted((library / "originals").glob("*.jpg"))
    rng = random.Random(5)
    for mp in QUERY_MEGAPIXELS:
        folder = base / f"queries-{mp:g}mp"
        folder.mkdir(parents=True, exist_ok=True)
        made = sorted(folder.glob("*.jpg"))
        if len(made) >= per_size:
            out[mp] = made[:per_size]
            continue
        for i in range(per_size):
            canvas_src = walls[i % len(walls)] if walls else originals[-1 - i]
            w = round((mp * 1e6 * 4 / 3) ** 0.5)
            h = round(w * 3 / 4)
            canvas = Image.open(canvas_src).convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
            inset = Image.open(rng.choice(originals)).convert("RGB")
            iw = int(w * 0.4)
            inset = inset.resize((iw, max(1, int(inset.height * iw / inset.width))))
            x = rng.randint(0, w - inset.width)
            y = rng.randint(0, max(0, h - inset.height))
            canvas.paste(inset, (x, y))
            canvas.save(folder / f"q{i:02d}.jpg", "JPEG", quality=90)
        out[mp] = sorted(folder.glob("*.jpg"))[:per_size]
    return out


def engine_latency(base: Path, lib_dir: Path, regions: bool, per_size: int) -> None:
    """Search by a new image through the engine (``Library.image_stages``, embedding
    included): the full stage and all stages, per query size."""
    from desktop_app.engine.library import Library
    from desktop_app.engine.settings import OFFLINE_MODEL, Settings

    queries = scene_queries(base, lib_dir, per_size)
    settings = Settings(model=OFFLINE_MODEL, regions_enabled=regions)
    rows: list[tuple[str, object, str]] = []
    extra: dict[str, object] = {}
    with Library.open(settings=settings) as lib:
        first = queries[QUERY_MEGAPIXELS[0]][0]
        for stage in lib.image_stages(first, top_k=50):  # warm: model, index, first calls
            stage()
        rows.append(
            ("indexed images", len(lib.catalog.fingerprints_with_vectors(lib.encoder_id)), "")
        )
        for mp, paths in queries.items():
            full_ms, all_ms = [], []
            for q in paths:
                t0 = time.perf_counter()
                stages = lib.image_stages(q, top_k=50)
                stages[0]()
                full_ms.append((time.perf_counter() - t0) * 1000)
                for later in stages[1:]:
                    later()
                all_ms.append((time.perf_counter() - t0) * 1000)
            cap = 800 if mp >= 12 else 500
            rows += [
                (f"{mp:g} MP: full results p50 ms", median(full_ms), "≤ 150"),
                (f"{mp:g} MP: full results p90 ms", percentile(full_ms, 90), ""),
                (f"{mp:g} MP: all stages p50 ms", median(all_ms), f"≤ {cap}"),
                (f"{mp:g} MP: all stages p90 ms", percentile(all_ms, 90), ""),
            ]
            extra[f"{mp:g}mp"] = {"full_ms": full_ms, "all_ms": all_ms}
    rows.append(("load (1-min avg)", round(os.getloadavg()[0], 2), "shared machine"))
    report("bench_search_engine" + ("" if regions else "_noregions"), rows, extra)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--no-regions", action="store_true")
    ap.add_argument("--prepare-only", action="store_true", help="build and index, then stop")
    ap.add_argument(
        "--base", type=Path, default=None, help="library + data dir (default bench/out/libN)"
    )
    ap.add_argument(
        "--engine",
        action="store_true",
        help="time Library.image_stages with 0.3, 3 and 12 MP scene queries (no window)",
    )
    args = ap.parse_args()
    regions = not args.no_regions
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    base = args.base or OUT / f"lib{args.n}"
    os.environ["DESKTOP_APP_HOME"] = str(base / ("home" if regions else "home-noregions"))
    lib_dir, queries = build_library(base, args.n)
    ensure_index(lib_dir, regions)
    if args.prepare_only:
        return
    if args.engine:
        engine_latency(base, lib_dir, regions, args.queries)
        return

    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtWidgets import QApplication

    from desktop_app.engine.library import Library
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.engine.settings import OFFLINE_MODEL, Settings
    from desktop_app.ui.main_window import MainWindow
    from desktop_app.ui.results_model import Role

    app = QApplication([])
    lib = Library(
        resolve_dirs(), Settings(model=OFFLINE_MODEL, regions_enabled=regions, watch_folders=False)
    )
    win = MainWindow(lib, watch=False)
    win.resize(1280, 800)
    win.show()

    def pump_until(cond, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
        end = time.perf_counter() + timeout
        while not cond():
            app.processEvents()
            if time.perf_counter() > end:
                raise TimeoutError
            time.sleep(0.0005)
        return time.perf_counter()

    pump_until(lambda: win.status_bar.encoder_label.text().startswith("efficientnet"))
    busy = [True]

    def indexed_files() -> int:
        return win.last_status.files if win.last_status else 0

    win.worker.busy.connect(lambda b: busy.__setitem__(0, b))
    pump_until(lambda: not busy[0] and indexed_files() >= args.n, 600)

    def visible_rows() -> list[int]:
        rows = []
        view_rect = win.view.viewport().rect()
        for row in range(win.model.rowCount()):
            if not win.view.visualRect(win.model.index(row)).intersects(view_rect):
                break
            rows.append(row)
        return rows

    def measure(query: Path) -> tuple[float, float, float]:
        got: list[float] = []
        done: list[float] = []
        first = win.searcher.finished.connect(lambda *_: got.append(time.perf_counter()))
        final = win.searcher.completed.connect(lambda *_: done.append(time.perf_counter()))
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(query))])
        t0 = time.perf_counter()
        win.drop_zone.handle_mime(mime)
        t_results = pump_until(lambda: bool(got))
        pump_until(
            lambda: all(
                win.model.data(win.model.index(r), Role.Thumbnail) is not None
                for r in visible_rows()
            )
        )
        win.view.viewport().repaint()
        t_painted = time.perf_counter()
        pump_until(lambda: bool(done))
        win.searcher.finished.disconnect(first)
        win.searcher.completed.disconnect(final)
        return (t_results - t0) * 1000, (t_painted - t0) * 1000, (done[0] - t0) * 1000

    results_ms, painted_ms, complete_ms, n_results, n_partial = [], [], [], [], []
    for q in queries[: args.queries]:
        r_ms, p_ms, c_ms = measure(q)
        results_ms.append(r_ms)
        painted_ms.append(p_ms)
        complete_ms.append(c_ms)
        n_results.append(win.model.rowCount())
        n_partial.append(sum(r.match == "partial" for r in win.model.results()))
    rows = [
        ("indexed images", indexed_files(), f">= {args.n}"),
        ("vectors", str(dict(win.last_status.vectors) if win.last_status else {}), ""),
        ("regions", regions, ""),
        ("queries", len(results_ms), ""),
        ("drop->full results median ms", median(results_ms), ""),
        ("drop->full results p90 ms", percentile(results_ms, 90), ""),
        ("drop->thumbnails painted median ms", median(painted_ms), "< 300"),
        ("drop->thumbnails painted p90 ms", percentile(painted_ms, 90), ""),
        ("drop->all results (incl. partial) median ms", median(complete_ms), "< 1000"),
        ("drop->all results p90 ms", percentile(complete_ms, 90), ""),
        ("results per query (median)", median(n_results), ""),
        ("partial results per query (median)", median(n_partial), ""),
        ("platform", app.platformName(), ""),
    ]
    win.shutdown()
    lib.close()
    report("bench_search" + ("" if regions else "_noregions"), rows)
    win.deleteLater()  # tear Qt objects down before the interpreter does
    app.processEvents()


if __name__ == "__main__":
    main()
