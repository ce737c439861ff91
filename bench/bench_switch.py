"""Encoder switches in the window (issue 9, fault 1: the window crashed about once in five
switches): switch between ``histogram`` and ``efficientnet-lite0`` through the Settings
dialog N times, a search during every re-index, and report crashes and the window's open
files and threads before and after.

    python bench/bench_switch.py [--switches 100] [--photos DIR] [--n 8]

The window runs in a child process, so a crash (a signal) is counted rather than ending
the benchmark: the next child goes on from the switch after it. Runs on the offscreen
platform unless a DISPLAY is set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ROOT, copy_photos, median, real_photos, report  # noqa: E402

FIXTURE_PHOTOS = ROOT / "tests" / "fixtures" / "photos"
MODELS = ("efficientnet-lite0", "histogram")  # switch i goes to MODELS[i % 2]
SWITCH_TIMEOUT_S = 300


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(first: int, last: int, photos: Path) -> None:
    """Switches first..last-1 in one window; one JSON line per switch on stdout."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import faulthandler

    faulthandler.enable()  # a crash leaves its stack on stderr
    from PySide6.QtWidgets import QApplication

    from desktop_app.engine.library import Library
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.engine.settings import Settings
    from desktop_app.ui.main_window import MainWindow

    app = QApplication([])
    lib = Library(resolve_dirs())
    win = MainWindow(lib, watch=False)
    win.show()

    def wait(done: Any, what: str) -> None:
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            app.processEvents()
            time.sleep(0.005)

    wait(lambda: win.status_bar.encoder_label.text().startswith(lib.slot.spec), "encoder")
    c = win.controller
    query = sorted(photos.iterdir())[0]
    for i in range(first, last):
        model = MODELS[i % 2]
        switched: list[str] = []
        found: list[Any] = []

        def on_results(_q: Any, results: Any, _s: float, found: list[Any] = found) -> None:
            found.append(results)

        c.worker.model_switched.connect(switched.append)
        c.searcher.completed.connect(on_results)
        started = time.perf_counter()
        dialog = win.open_settings()
        dialog.model.setCurrentText(model)
        dialog.accept()
        c.search_file(query)  # answered by the old encoder while the new one indexes
        wait(lambda: bool(switched) and bool(found), f"switch {i}")  # noqa: B023
        c.worker.model_switched.disconnect(switched.append)
        c.searcher.completed.disconnect(on_results)
        seconds = time.perf_counter() - started
        saved = Settings.load(lib.dirs.settings_path).model
        line = {
            "switch": i,
            "model": model,
            "seconds": seconds,
            "agree": saved == model == lib.catalog.get_meta("active_model"),
            "self_first": bool(found[0]) and found[0][0].path == str(query),
            "open_files": open_files(),
            "threads": os_threads(),
            "rss_mb": rss_mb(),
        }
        print(json.dumps(line), flush=True)
    clean = win.shutdown()
    if clean:
        lib.close()
    print(json.dumps({"clean_shutdown": clean}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switches", type=int, default=100)
    ap.add_argument("--photos", type=Path, default=FIXTURE_PHOTOS)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--child", nargs=3, metavar=("FIRST", "LAST", "PHOTOS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        first, last, photos = args.child
        child(int(first), int(last), Path(photos))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    env = {**os.environ, "DESKTOP_APP_HOME": str(work / "home"), "PYTHONPATH": str(ROOT)}
    photos = work / "photos"
    copy_photos(real_photos(args.n, source=args.photos), photos)
    # the library starts indexed with the fast encoder
    subprocess.run(
        [sys.executable, "-m", "desktop_app", "index", "--model", "histogram", str(photos)],
        env=env,
        check=True,
        capture_output=True,
    )
    (work / "home" / "config").mkdir(parents=True, exist_ok=True)
    (work / "home" / "config" / "settings.json").write_text(json.dumps({"model": "histogram"}))
    lines: list[dict[str, Any]] = []
    crashes, clean, stderr_tail = 0, True, ""
    done = 0
    while done < args.switches:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(done), str(args.switches), str(photos)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        got = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        switches = [x for x in got if "switch" in x]
        lines += switches
        clean = clean and all(x.get("clean_shutdown", True) for x in got)
        if proc.returncode != 0:
            crashes += 1
            stderr_tail = proc.stderr[-2000:]
            print(f"child ended with {proc.returncode} after switch {done + len(switches)}")
            print(stderr_tail, file=sys.stderr)
        done += len(switches) + (1 if proc.returncode != 0 else 0)
    seconds = [x["seconds"] for x in lines]
    warm = lines[1] if len(lines) > 1 else lines[0]  # both encoders loaded once
    rows = [
        ("switches", len(lines), f"= {args.switches}"),
        ("crashes", crashes, "0"),
        ("settings and catalog disagree", sum(not x["agree"] for x in lines), "0"),
        ("search during switch not itself first", sum(not x["self_first"] for x in lines), "0"),
        ("seconds per switch median", median(seconds), ""),
        ("seconds per switch max", max(seconds), ""),
        ("open files after switch 2", warm["open_files"], ""),
        ("open files after last switch", lines[-1]["open_files"], "flat"),
        ("threads after switch 2", warm["threads"], ""),
        ("threads after last switch", lines[-1]["threads"], "flat"),
        ("memory MB after switch 2", warm["rss_mb"], ""),
        ("memory MB after last switch", lines[-1]["rss_mb"], "flat"),
        ("clean shutdown", clean, "True"),
        ("photos", args.n, ""),
    ]
    series = {k: [x[k] for x in lines] for k in ("open_files", "threads", "rss_mb")}
    report("bench_switch", rows, series)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
