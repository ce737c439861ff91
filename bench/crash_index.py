"""SIGKILL the real ``desktop-app index`` at random moments, restart it each time, then
check that the catalog and the vector index agree exactly and match the folder (issue 9,
acceptance 1).

    python bench/crash_index.py [--photos DIR | --generate 1000] [--kills 20]
                                [--model histogram] [--seed 0]

Each kill waits until the run has committed a batch (so every kill lands mid-index),
then a random 0-1 s more. Reported: kills, files committed after each (never fewer
than before: nothing committed is lost), the final run's work (what it embedded is
exactly what was not yet committed: committed work is never redone; a kill loses only
the batch in flight, at most one batch of the encoder's batch size), and the check that
the catalog and the index agree and match the folder. Prints a table and a JSON line
(also saved under bench/out).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import copy_photos, last_json, report  # noqa: E402
from tests.store_check import assert_consistent  # noqa: E402


def generate(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = int(rng.integers(200, 900)), int(rng.integers(200, 900))
        base = rng.integers(0, 255, (8, 8, 3), np.uint8)
        im = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
        im.save(folder / f"gen-{i:05d}.jpg", quality=85)


def committed(data: Path) -> int:
    try:
        uri = f"file:{data / 'catalog.sqlite3'}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=None)
    ap.add_argument("--generate", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--model", default="histogram")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="crash-index-"))
    folder = work / "photos"
    if args.photos:
        copy_photos(sorted(p for p in args.photos.rglob("*") if p.is_file()), folder)
    else:
        generate(folder, args.generate, args.seed)
    env = {**os.environ, "DESKTOP_APP_HOME": str(work / "home"), "PYTHONPATH": str(ROOT)}
    data = work / "home" / "data"
    cmd = [
        sys.executable,
        "-m",
        "desktop_app",
        "index",
        str(folder),
        "--json",
        "--model",
        args.model,
        "-v",
    ]
    after: list[int] = []
    started = time.monotonic()
    for _ in range(args.kills):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = committed(data)
        while proc.poll() is None and committed(data) <= before:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        after.append(committed(data))
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    summary = last_json(final.stdout)
    seconds = time.monotonic() - started
    from desktop_app.engine.library import Library

    with Library.open(data, model=args.model) as lib:
        assert_consistent(lib, folder)
        files = lib.catalog.counts()["files"]
    n = sum(1 for _ in folder.iterdir())
    kills_mid_run = sum(1 for a in after if a < n)
    assert all(b >= a for a, b in zip(after, after[1:], strict=False)), "committed work lost"
    redone = summary["embedded"] + summary["reused"] - (n - after[-1])
    report(
        "crash_index: SIGKILL during indexing, then restart",
        [
            ("photos", n, ""),
            ("kills", args.kills, f"{kills_mid_run} while files were still to do"),
            ("files committed after each kill", after, ""),
            (
                "final run: embedded / reused / unchanged",
                f"{summary['embedded']} / {summary['reused']} / {summary['unchanged']}",
                "",
            ),
            ("committed work redone by the final run", redone, "must be 0"),
            ("catalog and index agree, index matches folder", "yes", f"{files} files"),
            ("seconds", round(seconds, 1), ""),
        ],
        {
            "photos": n,
            "kills": args.kills,
            "kills_mid_run": kills_mid_run,
            "committed_after_each_kill": after,
            "final": summary,
            "redone_by_final_run": redone,
            "consistent": True,
            "seconds": round(seconds, 1),
        },
    )


if __name__ == "__main__":
    main()
