"""A large real-photo library for latency benchmarks, built once and cached.

10,000 images: the CC0 clothing photos (3,781) plus, to reach the size, edited copies of
them (flipped, cropped, re-coloured, re-compressed: the near-duplicates a real library is
full of). A held-out set of photos that are not in the library serves as new queries.
"""

from __future__ import annotations

import random
from pathlib import Path

from common import CLOTHING, real_photos
from PIL import Image, ImageEnhance, ImageOps


def variant(src: Path, dest: Path, rng: random.Random) -> None:
    im = Image.open(src).convert("RGB")
    im.draft("RGB", (im.width // 2, im.height // 2))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    w, h = im.size
    f = rng.uniform(0.75, 0.95)
    x, y = rng.randint(0, int(w * (1 - f))), rng.randint(0, int(h * (1 - f)))
    im = im.crop((x, y, x + int(w * f), y + int(h * f)))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4))
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
    im.thumbnail((800, 800))
    im.save(dest, "JPEG", quality=rng.randint(70, 92))


def build_library(
    dest: Path, n: int = 10_000, held_out: int = 60, seed: int = 0, source: Path = CLOTHING
) -> tuple[Path, list[Path]]:
    """Fill ``dest/library`` with n images (once); return it and the held-out queries."""
    photos = real_photos(None, seed=seed, source=source)
    queries, base = photos[:held_out], photos[held_out:]
    lib = dest / "library"
    marker = dest / f"built-{n}"
    if marker.exists():
        return lib, queries
    lib.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    count = 0
    for i, p in enumerate(base[:n]):
        target = lib / "originals" / f"{i:05d}{p.suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(p.read_bytes())
        count += 1
    k = 0
    while count < n:
        src = base[k % len(base)]
        target = lib / "edits" / f"{k // 1000:02d}" / f"edit-{k:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            variant(src, target, rng)
        k += 1
        count += 1
    marker.write_text(str(n))
    return lib, queries
