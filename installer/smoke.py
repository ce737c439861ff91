"""Smoke test of the built app, run by installer/build.py on the bundle and on the .deb
unpacked into a scratch root.

    python installer/smoke.py dist/cpu/desktop-app/desktop-app [--screenshot OUT.png]
    python installer/smoke.py ROOT/usr/bin/desktop-app --path ROOT/usr/bin

Headless: `--version`; index the sample photos the app ships into a temporary data dir;
an image search, a find-similar, a region search and a search by a cropped copy (each
must find the source photo first); `status`. Then the window: the app is started under
Xvfb on Qt's xcb platform (the plugin a forgotten library breaks), the X server must show
a mapped window with the app's title, and the app saves its own screenshot before it
quits (checked for size and content). Prints one JSON summary; exits 0 when all passed.

The app runs with an environment of its own: PATH holds only the given folder (never a
Python), PYTHONPATH and PYTHONHOME are unset, HOME and DESKTOP_APP_HOME are temporary.
This driver itself needs Pillow (the build venv has it) to cut the crop query and read
the screenshot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifest  # noqa: E402

MODEL = "efficientnet-lite0"  # offline: the smoke test never needs the network


class SmokeFailure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


class App:
    """Runs the executable with a clean environment and a temporary home."""

    def __init__(self, exe: Path, path: str, home: Path) -> None:
        self.exe = exe
        self.env = {
            "PATH": path,
            "HOME": str(home),
            "DESKTOP_APP_HOME": str(home / "app"),
            "LANG": "C.UTF-8",
            "HF_HUB_OFFLINE": "1",
            "TMPDIR": str(home),
            # Windows programs need to know where Windows is
            **{k: v for k, v in os.environ.items() if k.upper() == "SYSTEMROOT"},
        }
        check(
            shutil.which("python3", path=path) is None
            and shutil.which("python", path=path) is None,
            f"PATH {path!r} holds a Python: the test would not show the bundle is self-contained",
        )

    def run(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
        started = time.monotonic()
        done = subprocess.run(
            [str(self.exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SmokeFailure(
                f"`desktop-app {' '.join(args)}` exited {done.returncode} after {seconds:.1f} s:\n"
                f"{done.stderr[-3000:]}"
            )
        return done.stdout

    def json_lines(self, *args: str) -> list[dict[str, Any]]:
        out = self.run(*args, "--json")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def first_hit(answer: list[dict[str, Any]], expected: Path, what: str) -> dict[str, Any]:
    check(len(answer) == 1 and answer[0]["results"], f"{what}: no results ({answer})")
    top = answer[0]["results"][0]
    check(
        Path(top["path"]).name == expected.name,
        f"{what}: first result {top['path']}, expected {expected.name}",
    )
    return top


def headless(app: App, samples: Path, work: Path) -> dict[str, Any]:
    photos = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    check(len(photos) >= 4, f"{samples} holds {len(photos)} photos; the bundle should ship 8")
    version = app.run("--version").strip()
    check(version.endswith(manifest.version()), f"--version said {version!r}")

    data = work / "data"
    started = time.monotonic()
    summary = app.json_lines("index", str(samples), "--data-dir", str(data), "--model", MODEL)[-1]
    index_seconds = time.monotonic() - started
    check(summary["embedded"] == len(photos), f"index embedded {summary['embedded']}")
    check(not summary["failed"], f"index failures: {summary['failed']}")

    query = photos[0]
    common = ("--data-dir", str(data), "--model", MODEL, "--top-k", "3")
    image = first_hit(app.json_lines("search", str(query), *common), query, "image search")
    check(image["score"] >= 0.99, f"image search scored its own photo {image['score']}")
    similar = first_hit(
        app.json_lines("search", "--similar-to", str(query), *common), query, "find-similar"
    )
    with Image.open(query) as im:
        w, h = im.size
        box = (w // 5, h // 5, w // 2, h // 2)  # x, y, w, h
        crop_file = work / "crop.jpg"
        im.convert("RGB").crop((box[0], box[1], box[0] + box[2], box[1] + box[3])).save(
            crop_file, quality=90
        )
    region = ",".join(str(v) for v in box)
    by_region = first_hit(
        app.json_lines("search", str(query), "--region", region, *common), query, "region search"
    )
    by_crop = first_hit(app.json_lines("search", str(crop_file), *common), query, "crop search")
    status = app.json_lines("status", "--data-dir", str(data), "--model", MODEL)[-1]
    check(status["files"] == len(photos), f"status counts {status['files']} files")
    return {
        "version": version,
        "indexed": summary["embedded"],
        "index_seconds": round(index_seconds, 1),
        "image_search": image,
        "find_similar": similar,
        "region_search": by_region,
        "crop_search": by_crop,
        "status_files": status["files"],
        "data_dir": str(data),
        "query": str(query),
    }


class Xvfb:
    """A private X server for the window test."""

    def __init__(self, work: Path) -> None:
        self.display = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.work = work

    def __enter__(self) -> Xvfb:
        check(shutil.which("Xvfb") is not None, "Xvfb is not installed (apt-get install xvfb)")
        for n in range(90, 140):
            if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
                break
        self.display = f":{n}"
        self.proc = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                return self
            time.sleep(0.1)
        raise SmokeFailure("Xvfb did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def mapped_window(display: str, title: str) -> bool:
    done = subprocess.run(
        ["xwininfo", "-display", display, "-name", title],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and "IsViewable" in done.stdout


def window(app: App, query: str, data: str, work: Path, shot: Path, seconds: float) -> dict:
    """The real window: under a private Xvfb on Linux (xcb, checked with xwininfo), on the
    runner's own desktop elsewhere (Windows, macOS: the screenshot is the check)."""
    on_x11 = sys.platform.startswith("linux")
    args = ["gui", query, "--data-dir", data, "--quit-after", str(seconds), "--screenshot"]
    args.append(str(shot))
    seen_after: float | None = None
    with contextlib.ExitStack() as stack:
        env = dict(app.env)
        if on_x11:
            check(shutil.which("xwininfo") is not None, "xwininfo is missing (x11-utils)")
            x = stack.enter_context(Xvfb(work))
            env.update(DISPLAY=x.display, QT_QPA_PLATFORM="xcb")
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(app.exe), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        while proc.poll() is None and time.monotonic() - started < seconds + 120:
            if on_x11 and seen_after is None and mapped_window(x.display, manifest.APP_TITLE):
                seen_after = time.monotonic() - started
            time.sleep(0.25)
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
        check(proc.returncode == 0, f"the window exited {proc.returncode}:\n{err.decode()[-3000:]}")
        if on_x11:
            check(seen_after is not None, f"no mapped window titled {manifest.APP_TITLE!r}")
    check(shot.is_file(), f"the app saved no screenshot at {shot}")
    with Image.open(shot) as im:
        size = im.size
        colours = len(im.convert("RGB").getcolors(1 << 20) or [])
    check(size[0] >= 640 and size[1] >= 400, f"screenshot is only {size}")
    check(colours > 100, f"screenshot has {colours} colours: an empty window?")
    return {
        "window_seconds": None if seen_after is None else round(seen_after, 1),
        "screenshot": str(shot),
        "size": size,
        "colours": colours,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("exe", type=Path, help="the built executable (or the .deb's /usr/bin link)")
    p.add_argument("--path", default=None, help="PATH for the app (default: the exe's folder)")
    p.add_argument("--samples", type=Path, default=None, help="default: shipped with the app")
    p.add_argument("--screenshot", type=Path, default=None, help="keep the window's picture")
    p.add_argument("--no-window", action="store_true", help="headless checks only")
    p.add_argument("--quit-after", type=float, default=20.0)
    args = p.parse_args(argv)

    exe = args.exe.absolute()
    samples = args.samples or exe.resolve().parent / "_internal" / "resources" / "samples"
    report: dict[str, Any] = {"exe": str(exe), "ok": False}
    with tempfile.TemporaryDirectory(prefix="desktop-app-smoke-") as tmp:
        work = Path(tmp)
        try:
            app = App(exe, args.path if args.path is not None else str(exe.parent), work)
            report["headless"] = headless(app, samples, work)
            if not args.no_window:
                shot = work / "window.png"
                h = report["headless"]
                report["window"] = window(
                    app, h["query"], h["data_dir"], work, shot, args.quit_after
                )
                if args.screenshot:
                    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(shot, args.screenshot)
                    report["window"]["screenshot"] = str(args.screenshot)
            report["ok"] = True
        except (SmokeFailure, subprocess.TimeoutExpired, OSError) as exc:
            report["error"] = str(exc)
    print(json.dumps(report, indent=1, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
