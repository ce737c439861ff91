"""Render the app icon from its SVG source into every format the platforms want.

    python installer/make_icons.py

`resources/desktop-app.svg` is the one source. This writes, under
`desktop_app/resources/icons/` (package data, so an installed wheel and the frozen app
find them through `importlib.resources`):

- `desktop-app.svg`, a copy of the source (Linux menus scale it),
- `desktop-app-{16..512}.png`, for the window icon and the hicolor theme of the `.deb`,
- `desktop-app.ico` (Windows: executable, installer, Start menu),
- `desktop-app.icns` (macOS `.app` bundle).

Pillow writes ICO and ICNS but cannot read SVG, so Qt's SVG renderer draws each size
(drawn per size, not scaled down from one bitmap, so the small sizes stay sharp). It runs
on the offscreen platform: no display needed. Run it again after editing the SVG and
commit the results; the build does not regenerate them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resources" / "desktop-app.svg"
OUT = ROOT / "desktop_app" / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def render(svg: Path, size: int) -> Image.Image:
    """One square RGBA rendering of the SVG at `size` pixels."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_RGBA8888)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = bytes(image.constBits())
    return Image.frombuffer("RGBA", (size, size), data, "raw", "RGBA", image.bytesPerLine(), 1)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    del app
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, OUT / "desktop-app.svg")
    rendered = {s: render(SOURCE, s) for s in sorted(set(PNG_SIZES + ICO_SIZES + ICNS_SIZES))}
    for size in PNG_SIZES:
        rendered[size].save(OUT / f"desktop-app-{size}.png", optimize=True)
    ico = [rendered[s] for s in ICO_SIZES]
    ico[-1].save(
        OUT / "desktop-app.ico",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=ico[:-1],
    )
    icns = [rendered[s] for s in ICNS_SIZES]
    icns[-1].save(OUT / "desktop-app.icns", append_images=icns[:-1])
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
