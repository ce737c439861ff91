"""Typed user settings, every default declared once, saved as JSON in the config dir.

The file carries a format ``version``: an older file (or one without it) is read and
upgraded when next saved; a newer one is refused with a clear message rather than
misread or overwritten. Threads: a Settings object belongs to the thread that loaded it;
other threads get a copy.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from desktop_app.engine.errors import SettingsTooNew

log = logging.getLogger(__name__)

OFFLINE_MODEL = "efficientnet-lite0"
# Colour layout only, no torch: the fast test tier and machines where torch cannot run.
HISTOGRAM_MODEL = "histogram"
# Models whose vector-space id is their name: known without loading any weights.
FIXED_ID_MODELS = (OFFLINE_MODEL, HISTOGRAM_MODEL)
DEFAULT_CLIP_MODEL = "ViT-B-32:laion2b_s34b_b79k"
DEFAULT_FILE_TYPES = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif")
DEVICES = ("auto", "cpu", "cuda", "mps")
SORT_ORDERS = ("score", "name", "date", "size")
SETTINGS_VERSION = 1  # 0: files written before settings had a version
# The grid's thumbnail side in pixels: the zoom slider's range and what a saved setting is
# clamped to. The top is the cached thumbnail's side (engine/thumbs.py THUMB_SIDE), so a
# cell never shows an enlarged thumbnail.
MIN_THUMBNAIL_SIZE, MAX_THUMBNAIL_SIZE = 64, 320


@dataclass
class Settings:
    # Encoder: the offline model or a CLIP model as ARCH:PRETRAINED / ARCH:/path/to/weights.
    model: str = DEFAULT_CLIP_MODEL
    device: str = "auto"
    batch_size: int = 0  # 0: chosen for the device
    # Search defaults.
    top_k: int = 50
    threshold: float = 0.0
    sort_order: str = "score"
    # Image loading.
    max_megapixels: float = 100.0
    file_types: list[str] = field(default_factory=lambda: list(DEFAULT_FILE_TYPES))
    # Partial-region matching: grid × grid windows of region_scale × the image's sides,
    # plus region_keypoints local features per image for geometric verification.
    regions_enabled: bool = True
    region_scale: float = 0.5
    region_grid: int = 3
    region_keypoints: int = 500
    # Vector store: empty for the embedded store in the data dir, or a Chroma server
    # (http://HOST:PORT) the team shares; machine_name is how this machine's files are
    # labelled there (empty: the host name).
    store_url: str = ""
    machine_name: str = ""
    # Desktop window.
    thumbnail_size: int = 160
    watch_folders: bool = True

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Read settings; a missing or damaged file gives defaults, a bad value its default."""
        settings = cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return settings
        except (OSError, ValueError) as exc:
            log.warning("settings file %s unreadable (%s); using defaults", path, exc)
            return settings
        if not isinstance(raw, dict):
            return settings
        version = raw.get("version", 0)
        if isinstance(version, int) and version > SETTINGS_VERSION:
            raise SettingsTooNew(
                f"the settings file {path} was written by a newer version of desktop-app "
                f"(format {version}, this version reads up to {SETTINGS_VERSION}). Update "
                "desktop-app, or move the file aside to start from the defaults."
            )
        for f in fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            default = getattr(settings, f.name)
            if _same_kind(value, default):
                setattr(settings, f.name, value)
            else:
                log.warning("setting %s=%r ignored: expected %s", f.name, value, type(default))
        settings.validate()
        return settings

    def snapshot(self) -> Settings:
        """A copy that shares nothing mutable with this one: what a job on another thread
        reads while the owner of this object goes on changing it."""
        return replace(self, file_types=list(self.file_types))

    def validate(self) -> None:
        """Clamp values that would break the app to their nearest sane value."""
        if self.device not in DEVICES:
            self.device = "auto"
        if self.sort_order not in SORT_ORDERS:
            self.sort_order = "score"
        self.batch_size = max(0, min(int(self.batch_size), 1024))
        self.top_k = max(1, min(int(self.top_k), 10_000))
        self.threshold = max(-1.0, min(float(self.threshold), 1.0))
        self.max_megapixels = max(1.0, float(self.max_megapixels))
        self.file_types = [t.lower().lstrip(".") for t in self.file_types if t.strip()]
        self.thumbnail_size = max(
            MIN_THUMBNAIL_SIZE, min(int(self.thumbnail_size), MAX_THUMBNAIL_SIZE)
        )
        self.region_scale = max(0.2, min(float(self.region_scale), 0.9))
        self.region_grid = max(1, min(int(self.region_grid), 3))  # ≤ 9 regions + 1 full
        self.region_keypoints = max(50, min(int(self.region_keypoints), 2000))

    def save(self, path: Path) -> None:
        """Write atomically so a crash never leaves a half-written settings file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({**asdict(self), "version": SETTINGS_VERSION}, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


def model_chosen(path: Path) -> bool:
    """Whether the settings file names a model: the user chose one (in Settings), as
    opposed to the built-in default, which must never trigger a download on its own."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and isinstance(raw.get("model"), str)
