"""Screenshots of the real window for the README, with real photos, under Xvfb.

    xvfb-run -s "-screen 0 1400x900x24" python docs/screenshots.py [--photos DIR]

Indexes a few hundred photos, searches by one, and captures the X screen with
ImageMagick's ``import`` (the real window as the X server shows it, menus included).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import CLOTHING, copy_photos, real_photos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=CLOTHING)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        sys.exit("run under xvfb-run (needs an X display)")
    work = Path(tempfile.mkdtemp(prefix="shots-"))
    os.environ["DESKTOP_APP_HOME"] = str(work / "home")
    folder = work / "Photos"
    photos = copy_photos(real_photos(args.n, seed=3, source=args.photos), folder)

    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    from desktop_app.engine.library import Library
    from desktop_app.engine.paths import resolve_dirs
    from desktop_app.engine.settings import OFFLINE_MODEL, Settings
    from desktop_app.ui.main_window import MainWindow

    app = QApplication([])
    app.setStyle("Fusion")
    lib = Library(resolve_dirs(), Settings(model=OFFLINE_MODEL))
    win = MainWindow(lib)
    win.move(0, 0)
    win.resize(1400, 900)
    win.show()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait(cond, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            pump(0.05)

    def shot(name: str) -> None:
        pump(0.5)
        out = ROOT / "docs" / name
        subprocess.run(["import", "-window", "root", "-crop", "1400x900+0+0", str(out)], check=True)
        print("wrote", out)

    wait(lambda: win.status_bar.encoder_label.text().startswith("efficientnet"))
    shot("empty-state.png")
    win.add_folder(str(folder))
    pump(2.0)
    shot("indexing.png")
    wait(lambda: win.last_status is not None and win.last_status.files == args.n)
    query = photos[17]
    win.search_file(query)
    wait(lambda: win.model.rowCount() > 0)
    wait(
        lambda: all(
            win.model.data(win.model.index(r), 0x0101 + 4) is not None
            for r in range(min(24, win.model.rowCount()))
        ),
        60,
    )
    win.folders.list.item(0).setSelected(True)
    shot("results.png")
    rect = win.view.visualRect(win.model.index(5))
    menu = win.view.build_menu(5)
    menu.popup(win.view.viewport().mapToGlobal(rect.center() + QPoint(10, 10)))
    shot("context-menu.png")
    menu.close()
    # a crop of one photo (half of its area, re-saved as JPEG) finds it as a partial match
    from PIL import Image

    parent = photos[42]
    im = Image.open(parent).convert("RGB")
    w, h = im.size
    crop = im.crop((w // 5, h // 4, w // 5 + int(w * 0.7), h // 4 + int(h * 0.7)))
    crop.save(work / "crop.jpg", quality=85)
    done: list[object] = []
    win.searcher.completed.connect(lambda *_: done.append(1))
    win.search_file(work / "crop.jpg")
    wait(lambda: bool(done))
    wait(
        lambda: all(
            win.model.data(win.model.index(r), 0x0101 + 4) is not None
            for r in range(min(24, win.model.rowCount()))
        ),
        60,
    )
    shot("partial-match.png")
    dialog = win.preview(win.model.result(0))
    dialog.move(200, 60)
    wait(lambda: dialog.image.pixmap is not None, 30)
    shot("preview.png")
    dialog.close()
    win.shutdown()
    lib.close()


if __name__ == "__main__":
    main()
