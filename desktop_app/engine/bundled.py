"""Files an installer put beside the frozen app: CLIP weights bundled at build time
(`python installer/build.py --with-weights FILE`), so an offline site's installer is
CLIP-ready without a download; and ONNX exports made at build time, so the CPU build runs
its encoders through ONNX Runtime without PyTorch in the bundle at all.

The frozen app unpacks to `sys._MEIPASS`; weights for `ARCH:TAG` sit in
`clip-weights/ARCH/TAG/` there, the exports in `onnx-models/` with an `index.json`
(installer/manifest.py names the folders; `encoders.onnx_cache` reads the index). A
source or wheel install has no such folders and this finds nothing. No Qt; any thread.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path

CLIP_WEIGHTS_DIR = "clip-weights"
ONNX_MODELS_DIR = "onnx-models"
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


def bundled_onnx_dir() -> Path | None:
    """The folder of ONNX exports the installer made at build time, if it shipped any."""
    root = bundle_root()
    if root is None:
        return None
    folder = root / ONNX_MODELS_DIR
    return folder if folder.is_dir() else None


def torch_installed() -> bool:
    """Whether PyTorch can be imported here, found without importing it: the CPU
    installer leaves it out (its encoders run from the exports above)."""
    try:
        return find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


# What the app says when a model needs PyTorch and this build has none.
NO_TORCH = (
    "this build of desktop-app has no PyTorch (the CPU installer runs the offline encoder "
    "through ONNX Runtime only, to stay small)"
)
