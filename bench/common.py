"""Shared helpers for the benchmarks: photo sources, timing, JSON plus a table."""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CLOTHING = SHARED / "data" / "clothing_small"
OUT = ROOT / "bench" / "out"


def real_photos(n: int | None = None, seed: int = 0, source: Path = CLOTHING) -> list[Path]:
    """Real photos to benchmark on (the CC0 clothing set by default)."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        sys.exit(f"no photos under {source}; pass --photos DIR")
    random.Random(seed).shuffle(files)
    return files if n is None else files[:n]


def copy_photos(files: Sequence[Path], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        target = dest / f"{i:05d}-{f.name}"
        shutil.copy2(f, target)
        out.append(target)
    return out


def bench_folder(base: Path, photos: Sequence[Path]) -> Path:
    """A benchmark's photo folder ``base/lib``, copied once and reused, with the app's
    home beside it (``DESKTOP_APP_HOME=base/home``, so its index is reused too)."""
    os.environ["DESKTOP_APP_HOME"] = str(base / "home")
    lib_dir = base / "lib"
    if not lib_dir.exists():
        copy_photos(photos, lib_dir)
    return lib_dir


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run the real command line; returns (seconds, stdout)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "desktop_app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0,):
        raise RuntimeError(f"desktop-app {' '.join(args)} failed:\n{proc.stderr}")
    return seconds, proc.stdout


def last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    name: str, rows: list[tuple[str, Any, str]], extra: dict[str, Any] | None = None
) -> None:
    """Print a readable table and one JSON object; also save the JSON under bench/out."""
    width = max(len(r[0]) for r in rows)
    print(f"\n{name}")
    print("-" * (width + 40))
    for label, value, target in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{label:<{width}}  {shown:>14}  {target}")
    data = {"benchmark": name, **{r[0]: r[1] for r in rows}, **(extra or {})}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=2))
    print(json.dumps(data))
