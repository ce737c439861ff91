"""GUI responsiveness while indexing: a heartbeat timer on the GUI thread while the
window indexes N real photos; reports the longest stall and the 99th percentile.

    python bench/bench_gui.py [--photos DIR] [--n 500]

Runs on the offscreen platform unless a DISPLAY is set (e.g. under xvfb-run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import CLOTHING, copy_photos, median, percentile, real_photos, report  # noqa: E402

HEARTBEAT_MS = 5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=CLOTHING)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--no-search", action="store_true", help="no search while indexing")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    os.environ["DESKTOP_APP_HOME"] = str(work / "home")
    photos = copy_photos(real_photos(args.n, source=args.photos), work / "photos")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop_app.engine.library import Library
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.engine.settings import OFFLINE_MODEL, Settings
    from desktop_app.ui.main_window import MainWindow

    app = QApplication([])
    settings = Settings(model=OFFLINE_MODEL)
    lib = Library(resolve_dirs(), settings)
    win = MainWindow(lib)
    win.show()
    while not win.status_bar.encoder_label.text().startswith("efficientnet"):
        app.processEvents()
        time.sleep(0.01)

    beats: list[float] = []
    timer = QTimer()
    timer.setInterval(HEARTBEAT_MS)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    done: list[object] = []
    win.worker.finished.connect(done.append)
    search_latency: list[float] = []

    def search_mid_index() -> None:
        # a search issued while indexing runs in the search pool, not behind the worker
        started = time.perf_counter()
        win.searcher.finished.connect(
            lambda *_: search_latency.append(time.perf_counter() - started)
        )
        win.search_file(photos[0])

    timer.start()
    started = time.perf_counter()
    win.add_folder(str(work / "photos"))
    if not args.no_search:
        QTimer.singleShot(3000, search_mid_index)
    while not done:
        app.processEvents()
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    timer.stop()
    gaps = [(b - a) * 1000 for a, b in zip(beats, beats[1:], strict=False)]
    stalls = [max(0.0, g - HEARTBEAT_MS) for g in gaps]
    worst = max(range(len(stalls)), key=stalls.__getitem__) if stalls else 0
    worst_at = beats[worst] - started if beats else 0.0
    summary = done[0]
    rows = [
        ("photos", args.n, ""),
        ("embedded", summary.embedded, f"= {args.n}"),  # type: ignore[attr-defined]
        ("index seconds", elapsed, ""),
        ("photos per second", args.n / elapsed, ""),
        ("heartbeats", len(beats), ""),
        ("heartbeat gap median ms", median(gaps), f"~{HEARTBEAT_MS}"),
        ("heartbeat gap p99 ms", percentile(gaps, 99), ""),
        ("longest stall ms", max(stalls), "< 100"),
        ("stall p99 ms", percentile(stalls, 99), ""),
        ("stalls over 100 ms", sum(st > 100 for st in stalls), ""),
        ("longest stall at s", worst_at, ""),
        ("search during indexing ms", search_latency[0] * 1000 if search_latency else -1.0, ""),
        ("platform", app.platformName(), ""),
    ]
    win.shutdown()
    lib.close()
    report("bench_gui", rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
