"""Does query clean-up help? Recall of the original photo for captioned and low-light
queries, with and without each clean-up step (engine/cleanup.py).

    python bench/bench_cleanup.py [--n 300] [--queries 60] [--model efficientnet-lite0]

A library of real photos (the clothing set) is indexed once under bench/out/cleanup/
(full-image vectors only: the clean-up acts on the query's embedding). Queries are
library photos changed the way screenshots and phone photos are:
  caption:   two lines of bold white text with a black outline, top and bottom (a meme)
  low-light: brightness x0.3, contrast x0.7, a little sensor noise
Each is searched as it is, with text removal, with enhancement, and with both;
recall@1 / @5 say how often the original comes first / in the top five.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import OUT, bench_folder, real_photos, report  # noqa: E402

WORDS = [
    "when",
    "you",
    "finally",
    "find",
    "the",
    "perfect",
    "outfit",
    "but",
    "it",
    "is",
    "sold",
    "out",
    "again",
    "monday",
    "mood",
]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def caption(image: Image.Image, rng: random.Random) -> Image.Image:
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(12, out.height // 11)
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(FONT, size)
    except OSError:
        font = ImageFont.load_default(size=size)
    for top in (True, False):
        text = " ".join(rng.sample(WORDS, 4)).upper()
        while draw.textlength(text, font=font) > out.width * 0.95 and " " in text:
            text = text.rsplit(" ", 1)[0]
        w = draw.textlength(text, font=font)
        y = size // 3 if top else out.height - size - size // 2
        draw.text(
            ((out.width - w) / 2, y),
            text,
            font=font,
            fill="white",
            stroke_width=max(1, size // 12),
            stroke_fill="black",
        )
    return out


def low_light(image: Image.Image, rng: random.Random) -> Image.Image:
    out = ImageEnhance.Brightness(image.convert("RGB")).enhance(0.3)
    out = ImageEnhance.Contrast(out).enhance(0.7)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 4, (out.height, out.width, 3))
    return Image.fromarray(np.clip(np.asarray(out, np.float32) + noise, 0, 255).astype(np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--model", default="efficientnet-lite0")
    args = ap.parse_args()
    base = OUT / f"cleanup{args.n}"
    lib_dir = bench_folder(base, real_photos(args.n, seed=1))

    from desktop_app.engine.cleanup import Cleanup
    from desktop_app.engine.imageio import load_image
    from desktop_app.engine.library import Library
    from desktop_app.engine.settings import Settings

    rng = random.Random(7)
    settings = Settings(model=args.model, regions_enabled=False)
    configs = {
        "as is": Cleanup(),
        "text removed": Cleanup(remove_text=True),
        "enhanced": Cleanup(enhance=True),
        "both": Cleanup(remove_text=True, enhance=True),
    }
    with Library.open(settings=settings) as lib:
        started = time.perf_counter()
        for p in lib.index([lib_dir]):
            if p.summary:
                print(f"  index: {p.summary.embedded} new, {time.perf_counter() - started:.0f} s")
        targets = sorted(str(p.resolve()) for p in lib_dir.iterdir())
        rng.shuffle(targets)
        targets = targets[: args.queries]
        hits: dict[tuple[str, str], list[int]] = {}
        seconds: dict[str, list[float]] = {name: [] for name in configs}
        for target in targets:
            original = load_image(target, max_side=1024).image
            for kind, make in (("caption", caption), ("low-light", low_light)):
                query = make(original, rng)
                for name, cleanup in configs.items():
                    t = time.perf_counter()
                    got = lib.search_image(query, top_k=5, cleanup=cleanup)
                    seconds[name].append(time.perf_counter() - t)
                    paths = [r.path for r in got]
                    rank = paths.index(target) + 1 if target in paths else 99
                    hits.setdefault((kind, name), []).append(rank)
    rows = []
    data: dict[str, float] = {}
    for (kind, name), ranks in hits.items():
        r1 = sum(r == 1 for r in ranks) / len(ranks)
        r5 = sum(r <= 5 for r in ranks) / len(ranks)
        rows.append((f"{kind}, {name}: recall@1 / @5", f"{r1:.3f} / {r5:.3f}", ""))
        data[f"{kind}|{name}|r1"], data[f"{kind}|{name}|r5"] = r1, r5
    for name, values in seconds.items():
        ms = 1000 * sorted(values)[len(values) // 2]
        rows.append((f"search with '{name}', median", f"{ms:.0f}", "ms"))
    print(f"\nquery clean-up: {args.n} images, {len(targets)} queries per kind, {args.model}")
    report("bench_cleanup", rows, data)


if __name__ == "__main__":
    main()
