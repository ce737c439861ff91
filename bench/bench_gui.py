"""GUI responsiveness while indexing: a heartbeat timer on the GUI thread while the
window indexes N real photos; reports the longest stall and the 99th percentile.

    python bench/bench_gui.py [--photos DIR] [--n 500]
    python bench/bench_gui.py --startup HOME [--rounds 3]
    python bench/bench_gui.py --searches 500 HOME [--queries DIR]

``--startup HOME``: the real ``desktop-app gui`` as its own process on an indexed data
dir (e.g. bench_search's 10k library: ``/work/perfdata/lib10000/home``), with its
bytecode compiled as an install has it (a first launch writes it and is not counted):
seconds from launch to the window painted and to the encoder ready (the log's
``startup:`` lines, wall clock against the launch), the CPU time the process had used
at the paint (what the load of a shared machine does not inflate), and the resident
memory once idle after the encoder is ready (targets: painted ≤ 1.0 s; RSS ≤ 1 GB at
10,000 images).
``--searches N HOME``: the window in this process on that data dir, N searches by
image, one after another (each waits for its final, partial-merged results); resident
memory after the first 10 and after all N (target: ≤ 5 % growth).

Runs on the offscreen platform unless a DISPLAY is set (e.g. under xvfb-run).
"""

from __future__ import annotations

import argparse
import gc
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


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def startup(home: Path, rounds: int, idle_s: float = 8.0) -> None:
    """The real window as its own process: launch -> painted -> encoder ready, and RSS."""
    import re
    import subprocess

    log_file = home / "logs" / "desktop-app.log"
    env = {**os.environ, "DESKTOP_APP_HOME": str(home)}
    # As installed: pip and PyInstaller compile the bytecode. Without it (this machine
    # sets PYTHONDONTWRITEBYTECODE) every launch compiled the app's 80 modules first,
    # half a second of CPU before the paint. A first, uncounted launch writes it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not os.environ.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    painted, ready, rss, cpu = [], [], [], []
    pattern = re.compile(
        r"startup: (window painted|encoder ready) .*, cpu ([0-9.]+) s \(at ([0-9.]+);"
    )
    subprocess.run(
        [sys.executable, "-m", "desktop_app", "gui", "--quit-after", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    for _ in range(rounds):
        offset = log_file.stat().st_size if log_file.exists() else 0
        launched = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "desktop_app", "gui", "--quit-after", "600"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seen: dict[str, float] = {}
        seen_cpu: dict[str, float] = {}
        deadline = time.time() + 300
        while "encoder ready" not in seen and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if log_file.exists():
                with log_file.open() as fh:
                    fh.seek(offset)
                    for m in pattern.finditer(fh.read()):
                        seen[m.group(1)] = float(m.group(3)) - launched
                        seen_cpu[m.group(1)] = float(m.group(2))
        time.sleep(idle_s)  # idle: the status refresh and first thumbnails settle
        rss.append(rss_mb(proc.pid))
        proc.terminate()
        proc.wait(timeout=60)
        painted.append(seen.get("window painted", float("nan")))
        cpu.append(seen_cpu.get("window painted", float("nan")))
        ready.append(seen.get("encoder ready", float("nan")))
    rows = [
        ("rounds", rounds, ""),
        ("launch -> window painted s (median)", median(painted), "≤ 1.0"),
        ("CPU seconds used by then (median)", median(cpu), "the load-independent part"),
        ("launch -> encoder ready s (median)", median(ready), ""),
        ("RSS idle after encoder ready MB (max)", max(rss), "≤ 1024 at 10,000 images"),
        ("load (1-min avg)", round(os.getloadavg()[0], 2), "shared machine"),
    ]
    report(
        "bench_gui_startup",
        rows,
        {"home": str(home), "painted": painted, "painted_cpu": cpu, "ready": ready},
    )


def many_searches(home: Path, n: int, queries_dir: Path | None) -> None:
    """N searches by image through the window in this process: memory growth."""
    os.environ["DESKTOP_APP_HOME"] = str(home)
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from desktop_app.engine.library import Library
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.engine.settings import Settings
    from desktop_app.ui.main_window import MainWindow

    dirs = resolve_dirs()
    queries = (
        sorted(queries_dir.glob("*.jpg"))
        if queries_dir
        else real_photos(60, source=CLOTHING / "validation")
    )
    app = QApplication([])
    settings = Settings.load(dirs.settings_path)
    settings.watch_folders = False
    lib = Library(dirs, settings, defer_store=True)
    win = MainWindow(lib, watch=False)
    win.show()

    def pump_until(cond, timeout: float = 300.0) -> None:  # type: ignore[no-untyped-def]
        end = time.perf_counter() + timeout
        while not cond():
            app.processEvents()
            if time.perf_counter() > end:
                raise TimeoutError
            time.sleep(0.002)

    pump_until(lambda: bool(win.status_bar.encoder_label.text()))
    done: list[float] = []
    win.searcher.completed.connect(lambda *_: done.append(time.perf_counter()))
    marks: dict[int, float] = {}
    started = time.perf_counter()
    for i in range(n):
        before = len(done)
        win.search_file(queries[i % len(queries)])
        pump_until(lambda before=before: len(done) > before)
        if i + 1 in (10, n) or (i + 1) % 100 == 0:
            gc.collect()
            marks[i + 1] = rss_mb()
            print(f"  {i + 1} searches: RSS {marks[i + 1]:.0f} MB", flush=True)
    elapsed = time.perf_counter() - started
    growth = (marks[n] - marks[10]) / marks[10] if n > 10 else float("nan")
    rows = [
        ("searches", n, ""),
        ("indexed files", win.last_status.files if win.last_status else -1, ""),
        ("RSS after 10 searches MB", marks.get(10, float("nan")), ""),
        (f"RSS after {n} searches MB", marks[n], "≤ 1024"),
        ("growth from 10 to all", growth, "≤ 0.05"),
        ("seconds per search (median of all)", elapsed / n, "loaded machine"),
        ("load (1-min avg)", round(os.getloadavg()[0], 2), "shared machine"),
    ]
    win.shutdown()
    lib.close()
    report("bench_gui_searches", rows, {"rss_marks_mb": marks})
    win.deleteLater()
    app.processEvents()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=CLOTHING)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--no-search", action="store_true", help="no search while indexing")
    ap.add_argument("--startup", type=Path, default=None, metavar="HOME")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--searches", type=int, default=0)
    ap.add_argument("--queries", type=Path, default=None, help="query photos (--searches)")
    ap.add_argument("home", type=Path, nargs="?", help="data dir for --searches")
    args = ap.parse_args()
    if args.startup:
        startup(args.startup, args.rounds)
        return
    if args.searches:
        if args.home is None:
            ap.error("--searches needs HOME (an indexed data dir)")
        many_searches(args.home, args.searches, args.queries)
        return
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
