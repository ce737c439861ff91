"""Files an installer put beside the frozen app: CLIP weights bundled at build time
(`python installer/build.py --with-weights FILE`), so an offline site's installer is
CLIP-ready without a download.

The frozen app unpacks to `sys._MEIPASS`; weights for `ARCH:TAG` sit in
`clip-weights/ARCH/TAG/` there (installer/manifest.py names the folder). A source or
wheel install has no such folder and this finds nothing. No Qt; any thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

CLIP_WEIGHTS_DIR = "clip-weights"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def bundle_root() -> Path | None:
    """The frozen app's unpacked folder, or None when running from source or a wheel."""
    root = getattr(sys, "_MEIPASS", None)
    return Path(root) if root else None


def bundled_clip_weights(arch: str, tag: str) -> Path | None:
    """The weights file bundled for `arch:tag`, if the installer shipped one."""
    root = bundle_root()
    if root is None:
        return None
    folder = root / CLIP_WEIGHTS_DIR / arch / tag
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return files[0] if files else None
