"""Partial-region matching quality, measured through the real engine (``Library``).

    python bench/bench_regions.py [--wallpapers DIR] [--distractors 300] [--max-parents N]
                                  [--max-queries N] [--stage-sample 40] [--quick]
                                  [--seed 1234] [--keep] [--path torch,onnx]

``--path torch,onnx`` runs everything below once per inference path (``DESKTOP_APP_RUNTIME``)
on the same database and queries, and prints recall@1 per query kind for each path with
its difference to the first (target: within 0.01), saved as ``bench_regions[_quick]_paths``.

Database: the Debian desktop wallpapers (high-res real photos and artworks; fetched with
``../shared/scripts/fetch-wallpapers.sh DIR`` when DIR has none) plus N clothing photos
as distractors (``CLOTHING``, train split). The wallpapers are de-duplicated: screenshots
and portrait copies are dropped, and of several resolutions of one file name (Elephants,
Elephants_3840x2160) only the largest is kept. Colour variants of one design (gnome
``*-d``/``*-l``, plasma ``*_dark``, ``MATE-Stripes-Dark/Light``, ``Ubuntu-Mate-Cold/Warm/…``)
stay in the database as separate images. They are scored two ways: *strict* (only the
exact parent is right, a variant ranked first is a miss; the main numbers) and *design*
(any image of the same design is right; ``design_*`` keys in the JSON).

Queries (seeded, per parent, generated in 2 processes, saved as files outside the library):
  * crops of 50 %, 25 % and 10 % of the area (aspect jitter ±25 %, random position),
    downscaled by half and saved as JPEG q=85; one of each size per parent, plus a second
    10 % crop (the hardest size);
  * full-image edits, JPEG q=90 unless stated: half size, JPEG q=30, brightness ±20 %,
    contrast ±20 %, rotation ±5° (no expansion), horizontal flip, a text caption. A sampled
    subset: each parent gets 2 of the 7 kinds, in rotation, so each kind has ~2/7 of the
    parents (sign of ±-edits random);
  * scenes: a 1024×768 canvas cut from a clothing photo of the validation split (never in
    the database) with the parent pasted at a linear size of 30–60 % of the canvas (fit
    inside frac·W × frac·H, aspect kept, random position), JPEG q=85.

The database is indexed twice, with ``regions_enabled`` True and False (separate
DESKTOP_APP_HOME dirs under one temp dir), and every query goes through
``Library.search_image(path, top_k=10)`` on both (``--max-queries N``: a seeded sample,
equal per kind, for a loaded machine. Estimated from the research timings, not measured:
~1.3 s per query for both indexes on an idle 2-core CPU, so the default 588 queries plus
indexing take ~20 min). Per query kind: recall@1, recall@5,
mAP (one relevant item: AP = 1/rank of the first correct hit in the top 10, else 0),
IoU ≥ 0.5 (over correct hits labelled "partial": the returned region vs. the crop box in
parent pixels, or the whole parent for scenes and edits; no region counts as a miss),
match-label accuracy (over correct hits: "partial" expected for crops and scenes, "full"
for edits), search latency median/p90. A stratified sample is also run through
``image_stages`` to time the full-results stage and the merged (all-results) stage.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CLOTHING, OUT, ROOT, SHARED, median, percentile, report  # noqa: E402

sys.path.insert(0, str(ROOT))
from desktop_app.engine.analysis import KEYPOINTS, TINY  # noqa: E402
from desktop_app.engine.encoders.runtime import RUNTIME_ENV, RUNTIMES  # noqa: E402
from desktop_app.engine.imageio import to_rgb  # noqa: E402
from desktop_app.engine.library import Library  # noqa: E402
from desktop_app.engine.paths import HOME_ENV  # noqa: E402
from desktop_app.engine.regions import iou, keypoints_from_bytes  # noqa: E402
from desktop_app.engine.settings import OFFLINE_MODEL, Settings  # noqa: E402

FETCH = SHARED / "scripts" / "fetch-wallpapers.sh"
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp")
KINDS = ["crop50", "crop25", "crop10", "edit", "scene"]
EDITS = ["half", "jpeg30", "brightness", "contrast", "rotate", "flip", "caption"]
CAPTIONS = ["Summer holidays 2024!", "best day ever", "Look at this :)", "wallpaper of the week"]
TOP_K = 10
SCENE_SIZE = (1024, 768)


# -- the photos ---------------------------------------------------------------------------
def ensure_wallpapers(folder: Path) -> None:
    if folder.is_dir() and any(p.suffix.lower() in IMAGE_EXT for p in folder.rglob("*")):
        return
    print(f"fetching wallpapers into {folder} …", flush=True)
    subprocess.run(["bash", str(FETCH), str(folder)], check=True)


def _size_free(stem: str) -> str:
    """The file name without a resolution: Elephants_3840x2160 -> Elephants."""
    return re.sub(r"_?\d{3,5}x\d{3,5}", "", stem)


def design_key(path: Path) -> str:
    """One key per design: colour/brightness variants of one design share it."""
    stem = _size_free(path.stem)
    stem = re.sub(r"_contents_images", "", stem)
    stem = re.sub(r"(?i)[-_](d|l|dark|light)$", "", stem)
    stem = re.sub(r"(?i)_dark$", "", stem)
    stem = re.sub(r"(?i)Ubuntu-Mate-(Cold|Warm|Radioactive|Dark)-no-logo", "Ubuntu-Mate", stem)
    return f"{path.parent.name}/{stem.lower()}"


def select_wallpapers(folder: Path) -> tuple[list[Path], list[str]]:
    """De-duplicated wallpapers and what was dropped (and why)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    dropped: list[str] = []
    keep: dict[str, tuple[int, Path]] = {}
    for p in files:
        if "screenshot" in p.name.lower():
            dropped.append(f"{p.name}: screenshot")
            continue
        with Image.open(p) as im:
            w, h = ImageOps.exif_transpose(im).size if im.format == "JPEG" else im.size
        if h > w:
            dropped.append(f"{p.name}: portrait copy")
            continue
        key = f"{p.parent.name}/{_size_free(p.stem)}"
        if key in keep:
            other = keep[key]
            small, big = sorted([other, (w * h, p)], key=lambda t: t[0])
            dropped.append(f"{small[1].name}: smaller copy of {big[1].name}")
            keep[key] = big
        else:
            keep[key] = (w * h, p)
    return sorted(p for _, p in keep.values()), dropped


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# -- the queries -------------------------------------------------------------------------
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def caption(im: Image.Image, rng: random.Random) -> Image.Image:
    im = im.copy()
    w, h = im.size
    draw = ImageDraw.Draw(im)
    font = _font(max(12, w // 25))
    xy = (int(w * 0.05), int(h * rng.uniform(0.72, 0.88)))
    draw.text(
        xy,
        rng.choice(CAPTIONS),
        font=font,
        fill="white",
        stroke_width=max(1, w // 400),
        stroke_fill="black",
    )
    return im


def apply_edit(im: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, int, str]:
    """(edited image, JPEG quality, description)."""
    sign = rng.choice([-1, 1])
    if kind == "half":
        return im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), 90, "half size"
    if kind == "jpeg30":
        return im, 30, "JPEG q=30"
    if kind == "brightness":
        return (
            ImageEnhance.Brightness(im).enhance(1 + 0.2 * sign),
            90,
            f"brightness {sign * 20:+d}%",
        )
    if kind == "contrast":
        return ImageEnhance.Contrast(im).enhance(1 + 0.2 * sign), 90, f"contrast {sign * 20:+d}%"
    if kind == "rotate":
        return (
            im.rotate(5 * sign, resample=Image.Resampling.BICUBIC, expand=False),
            90,
            f"rotate {5 * sign:+d}°",
        )
    if kind == "flip":
        return ImageOps.mirror(im), 90, "horizontal flip"
    if kind == "caption":
        return caption(im, rng), 90, "caption"
    raise ValueError(kind)


def random_crop(W: int, H: int, area: float, rng: random.Random) -> tuple[int, int, int, int]:
    ar = float(np.exp(rng.uniform(-0.25, 0.25)))
    cw = min(W, round(W * (area * ar) ** 0.5))
    ch = min(H, round(H * (area / ar) ** 0.5))
    return rng.randint(0, W - cw), rng.randint(0, H - ch), cw, ch


def make_queries(job: dict[str, Any]) -> list[dict[str, Any]]:
    """All queries of one parent (runs in a worker process; its own seeded rng, drawn
    from in a fixed order: crops, edits, scenes)."""
    pi, src, qdir = job["parent"], Path(job["path"]), Path(job["qdir"])
    rng = random.Random(f"{job['seed']}-{src.name}")
    with Image.open(src) as raw:
        im = to_rgb(ImageOps.exif_transpose(raw))  # as the engine sees it: alpha on white

    def save(img: Image.Image, name: str, quality: int) -> str:
        p = qdir / f"{pi:03d}-{name}.jpg"
        img.save(p, "JPEG", quality=quality)
        return str(p)

    return (
        crop_queries(im, pi, job["crops"], rng, save)
        + edit_queries(im, pi, job["edits"], rng, save)
        + scene_queries(im, pi, job["scenes"], job["backgrounds"], rng, save)
    )


Save = Callable[[Image.Image, str, int], str]  # (image, name, JPEG quality) -> path


def crop_queries(
    im: Image.Image, pi: int, crops: list[tuple[float, int]], rng: random.Random, save: Save
) -> list[dict[str, Any]]:
    W, H = im.size
    out: list[dict[str, Any]] = []
    for area, reps in crops:
        for r in range(reps):
            x, y, cw, ch = random_crop(W, H, area, rng)
            c = im.crop((x, y, x + cw, y + ch))
            c = c.resize((max(1, cw // 2), max(1, ch // 2)), Image.Resampling.LANCZOS)
            kind = f"crop{round(area * 100)}"
            out.append(
                dict(path=save(c, f"{kind}-{r}", 85), kind=kind, parent=pi, box=[x, y, cw, ch])
            )
    return out


def edit_queries(
    im: Image.Image, pi: int, edits: list[str], rng: random.Random, save: Save
) -> list[dict[str, Any]]:
    W, H = im.size
    out: list[dict[str, Any]] = []
    for kind in edits:
        e, quality, desc = apply_edit(im, kind, rng)
        out.append(
            dict(
                path=save(e, f"edit-{kind}", quality),
                kind="edit",
                edit=kind,
                desc=desc,
                parent=pi,
                box=[0, 0, W, H],
            )
        )
    return out


def scene_queries(
    im: Image.Image, pi: int, n: int, backgrounds: list[str], rng: random.Random, save: Save
) -> list[dict[str, Any]]:
    W, H = im.size
    SW, SH = SCENE_SIZE
    out: list[dict[str, Any]] = []
    for r in range(n):
        with Image.open(rng.choice(backgrounds)) as b:
            bg = b.convert("RGB")
        s = max(SW / bg.width, SH / bg.height)
        bg = bg.resize((round(bg.width * s), round(bg.height * s)), Image.Resampling.BILINEAR)
        ox, oy = (bg.width - SW) // 2, (bg.height - SH) // 2
        bg = bg.crop((ox, oy, ox + SW, oy + SH))
        frac = rng.uniform(0.3, 0.6)
        k = min(frac * SW / W, frac * SH / H)
        pw, ph = max(1, round(W * k)), max(1, round(H * k))
        px, py = rng.randint(0, SW - pw), rng.randint(0, SH - ph)
        bg.paste(im.resize((pw, ph), Image.Resampling.LANCZOS), (px, py))
        out.append(
            dict(
                path=save(bg, f"scene-{r}", 85),
                kind="scene",
                parent=pi,
                box=[0, 0, W, H],
                qbox=[px, py, pw, ph],
                frac=round(frac, 3),
            )
        )
    return out


# -- indexing and searching ----------------------------------------------------------------
def open_library(home: Path, regions: bool) -> Library:
    os.environ[HOME_ENV] = str(home)
    settings = Settings(model=OFFLINE_MODEL, regions_enabled=regions)
    return Library.open(settings=settings, model=OFFLINE_MODEL)


def index_timed(lib: Library, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    last = None
    for progress in lib.index([folder]):
        last = progress
    seconds = time.perf_counter() - started
    s = last.summary if last is not None else None
    if s is None or s.failed:
        raise RuntimeError(f"indexing {folder} failed: {s}")
    return {"seconds": seconds, "embedded": s.embedded, "per_image_s": seconds / max(1, s.embedded)}


def storage_stats(lib: Library) -> dict[str, Any]:
    enc = lib.encoder_id
    fps = sorted(lib.catalog.fingerprints_with_vectors(enc, "full"))
    counts = {k: n for (e, k), n in lib.catalog.vector_counts().items() if e == enc}
    blobs = lib.catalog.features(KEYPOINTS, fps)
    sizes = [len(b) for b in blobs.values()]
    colour = sum(len(b) for b in lib.catalog.features(TINY, fps).values())
    npts = {fp: len(keypoints_from_bytes(b)) for fp, b in blobs.items()}
    data_bytes = sum(f.stat().st_size for f in lib.dirs.data.rglob("*") if f.is_file())
    return {
        "images": len(fps),
        "vectors": counts,
        "vectors_per_image": sum(counts.values()) / max(1, len(fps)),
        "keypoint_blobs": len(sizes),
        "keypoint_bytes_per_image": sum(sizes) / max(1, len(fps)),
        "colour_bytes_per_image": colour / max(1, len(fps)),
        "data_dir_bytes_per_image": data_bytes / max(1, len(fps)),
        "_npts": npts,
    }


def evaluate(
    results: list[Any], q: dict[str, Any], parent_of: dict[str, int], design_of: list[str]
) -> dict[str, Any]:
    ranked = [parent_of.get(r.path, -1) for r in results]
    rank = next((i for i, p in enumerate(ranked) if p == q["parent"]), None)
    want = design_of[q["parent"]]
    drank = next((i for i, p in enumerate(ranked) if p >= 0 and design_of[p] == want), None)
    row: dict[str, Any] = {"rank": rank, "design_rank": drank}
    if results:
        top = ranked[0]
        row["top1"] = (
            "parent"
            if top == q["parent"]
            else "variant"
            if top >= 0 and design_of[top] == want
            else "wallpaper"
            if top >= 0
            else "distractor"
        )
        row["top1_score"] = round(float(results[0].score), 4)
    else:
        row["top1"] = "none"
    if rank is not None:
        hit = results[rank]
        row["match"] = hit.match
        row["score"] = round(float(hit.score), 4)
        row["region"] = list(hit.region) if hit.region else None
        expected = "full" if q["kind"] == "edit" else "partial"
        row["label_ok"] = hit.match == expected
        if hit.match == "partial":
            row["iou"] = round(iou(hit.region, q["box"]), 4) if hit.region else 0.0
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {"n": 0}
    ranks = [r["rank"] for r in rows]
    dranks = [r["design_rank"] for r in rows]
    ious = [r["iou"] for r in rows if "iou" in r]
    labels = [r["label_ok"] for r in rows if "label_ok" in r]
    ms = [r["ms"] for r in rows]
    return {
        "n": n,
        "recall@1": sum(r == 0 for r in ranks) / n,
        "recall@5": sum(r is not None and r < 5 for r in ranks) / n,
        "mAP": sum(1 / (r + 1) for r in ranks if r is not None) / n,
        "recall@10": sum(r is not None for r in ranks) / n,
        "design_recall@1": sum(r == 0 for r in dranks) / n,
        "design_mAP": sum(1 / (r + 1) for r in dranks if r is not None) / n,
        "iou>=0.5": (sum(v >= 0.5 for v in ious) / len(ious)) if ious else float("nan"),
        "n_partial_hits": len(ious),
        "label_acc": (sum(labels) / len(labels)) if labels else float("nan"),
        "ms_median": median(ms),
        "ms_p90": percentile(ms, 90),
    }


def stratified(queries: list[dict[str, Any]], n: int, seed: int) -> list[int]:
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        by_kind[q["kind"]].append(i)
    rng = random.Random(seed)
    per = max(1, n // len(by_kind))
    out: list[int] = []
    for k in KINDS:
        ids = by_kind.get(k, [])
        out += rng.sample(ids, min(per, len(ids)))
    return sorted(out)


# -- the steps of a run --------------------------------------------------------------------
@dataclass
class Photos:
    """The database: de-duplicated wallpapers (the parents) and clothing distractors."""

    walls: list[Path]
    dropped: list[str]  # wallpapers left out, and why
    designs: list[str]  # design key per wallpaper
    groups: dict[str, int]  # designs with colour variants -> how many
    distract: list[Path]
    backgrounds: list[str]  # scene canvases, never in the database


@dataclass
class Indexed:
    """Both libraries over the same database, and what indexing them cost."""

    libs: dict[str, Library]  # "regions", "baseline"
    stats: dict[str, Any]
    parent_npts: dict[int, int]  # keypoints per parent
    untextured: list[int]  # parents with < 100 keypoints


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--wallpapers", type=Path, default=OUT / "wallpapers")
    ap.add_argument("--distractors", type=int, default=300)
    ap.add_argument("--max-parents", type=int, default=None)
    ap.add_argument(
        "--quick", action="store_true", help="12 parents, 60 distractors, fewer queries"
    )
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--stage-sample", type=int, default=40, help="queries timed per stage")
    ap.add_argument(
        "--max-queries",
        type=int,
        default=None,
        help="search only a seeded sample of the queries, equal per kind (default: all)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (libraries, queries)")
    ap.add_argument(
        "--path",
        default="",
        help="inference paths to compare, comma-separated (torch, onnx, onnx-int8); each "
        "indexes and searches the same database and queries; the first is the reference "
        "(default: the app's automatic choice only)",
    )
    args = ap.parse_args()
    args.paths = [p.strip() for p in args.path.split(",") if p.strip()] or [""]
    unknown = [p for p in args.paths if p not in RUNTIMES]
    if args.path and unknown:
        ap.error(f"unknown path {unknown}; choose from {', '.join(RUNTIMES)}")
    if args.quick:
        args.max_parents = args.max_parents or 12
        args.distractors = min(args.distractors, 60)
        args.stage_sample = min(args.stage_sample, 10)
    return args


def choose_photos(args: argparse.Namespace) -> Photos:
    ensure_wallpapers(args.wallpapers)
    walls, dropped = select_wallpapers(args.wallpapers)
    if args.max_parents and args.max_parents < len(walls):
        walls = sorted(random.Random(args.seed).sample(walls, args.max_parents))
    designs = [design_key(p) for p in walls]
    groups = {k: n for k, n in Counter(designs).items() if n > 1}
    cloth = sorted(
        p for p in (CLOTHING / "train").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")
    )
    backgrounds = sorted(str(p) for p in (CLOTHING / "validation").rglob("*.jpg"))
    if len(cloth) < args.distractors:
        sys.exit(f"only {len(cloth)} distractor photos under {CLOTHING}/train")
    distract = sorted(random.Random(args.seed).sample(cloth, args.distractors))
    print(
        f"{len(walls)} wallpapers ({len(dropped)} copies dropped, {len(groups)} designs with "
        f"colour variants), {len(distract)} distractors",
        flush=True,
    )
    return Photos(walls, dropped, designs, groups, distract, backgrounds)


def build_database(photos: Photos, db_walls: Path, db_dis: Path) -> dict[str, int]:
    """Link the photos into the two database folders; wallpaper path -> parent index."""
    parent_of: dict[str, int] = {}
    for i, p in enumerate(photos.walls):
        dst = db_walls / f"{i:03d}-{p.name}"
        link_or_copy(p, dst)
        parent_of[str(dst.resolve())] = i
    for i, p in enumerate(photos.distract):
        link_or_copy(p, db_dis / f"{i:04d}-{p.parent.name}-{p.name}")
    return parent_of


def generate_queries(
    args: argparse.Namespace, photos: Photos, qdir: Path, crops: list[tuple[float, int]]
) -> tuple[list[dict[str, Any]], dict[str, int], float]:
    """(the queries to search, how many of each kind were made, seconds it took).

    2 processes; each parent has its own seeded rng, so the order does not matter."""
    t0 = time.perf_counter()
    jobs = [
        dict(
            parent=i,
            path=str(p),
            qdir=str(qdir),
            seed=args.seed,
            crops=crops,
            edits=[EDITS[(2 * i) % 7], EDITS[(2 * i + 1) % 7]],
            scenes=1,
            backgrounds=photos.backgrounds,
        )
        for i, p in enumerate(photos.walls)
    ]
    with ProcessPoolExecutor(2) as pool:
        queries = [q for qs in pool.map(make_queries, jobs) for q in qs]
    t_queries = time.perf_counter() - t0
    made = dict(Counter(q["kind"] for q in queries))
    if args.max_queries and args.max_queries < len(queries):
        queries = [queries[i] for i in stratified(queries, args.max_queries, args.seed + 1)]
    searched = dict(Counter(q["kind"] for q in queries))
    print(
        f"{sum(made.values())} queries made in {t_queries:.0f} s, searching {searched}", flush=True
    )
    return queries, made, t_queries


def index_both(work: Path, db_walls: Path, db_dis: Path, parent_of: dict[str, int]) -> Indexed:
    """Index the database twice, with and without region matching (homes under ``work``)."""
    libs: dict[str, Library] = {}
    index_stats: dict[str, Any] = {}
    for label, regions in (("regions", True), ("baseline", False)):
        lib = open_library(work / f"home-{label}", regions)
        _ = lib.encoder  # load the weights before timing
        lib.encoder.embed_images([Image.new("RGB", (64, 64))])
        walls_t = index_timed(lib, db_walls)
        dis_t = index_timed(lib, db_dis)
        stats = storage_stats(lib)
        n_img = walls_t["embedded"] + dis_t["embedded"]
        index_stats[label] = {
            "wallpapers": walls_t,
            "distractors": dis_t,
            "per_image_s": (walls_t["seconds"] + dis_t["seconds"]) / max(1, n_img),
            **stats,
        }
        libs[label] = lib
        print(
            f"indexed [{label}] {n_img} images: {walls_t['per_image_s'] * 1000:.0f} ms/wallpaper, "
            f"{dis_t['per_image_s'] * 1000:.0f} ms/distractor, "
            f"{stats['vectors_per_image']:.2f} vectors/img, "
            f"{stats['keypoint_bytes_per_image'] / 1024:.1f} KB keypoints/img",
            flush=True,
        )
    # keypoints per parent (zero or few: untextured wallpapers)
    npts = index_stats["regions"].pop("_npts")
    index_stats["baseline"].pop("_npts")
    parent_npts = {}
    for path, pi in parent_of.items():
        frow = libs["regions"].catalog.file(path)
        parent_npts[pi] = npts.get(frow.fingerprint, 0) if frow and frow.fingerprint else 0
    untextured = sorted(pi for pi, n in parent_npts.items() if n < 100)
    return Indexed(libs, index_stats, parent_npts, untextured)


def search_all(
    libs: dict[str, Library],
    queries: list[dict[str, Any]],
    parent_of: dict[str, int],
    designs: list[str],
) -> tuple[dict[str, list[dict[str, Any]]], float]:
    """Every query on both libraries: (per library, a row per query; seconds)."""
    for lib in libs.values():  # warm-up (lazy imports, first-call costs)
        lib.search_image(queries[0]["path"], top_k=TOP_K)
    per: dict[str, list[dict[str, Any]]] = {label: [] for label in libs}
    t0 = time.perf_counter()
    for qi, q in enumerate(queries):
        for label, lib in libs.items():
            s = time.perf_counter()
            results = lib.search_image(q["path"], top_k=TOP_K)
            ms = (time.perf_counter() - s) * 1000
            row = evaluate(results, q, parent_of, designs)
            row["ms"] = ms
            per[label].append(row)
        if qi % 50 == 0 or qi == len(queries) - 1:
            el = time.perf_counter() - t0
            print(f"  query {qi + 1}/{len(queries)}  {el:.0f} s", flush=True)
    return per, time.perf_counter() - t0


def time_stages(
    libs: dict[str, Library], queries: list[dict[str, Any]], sample: list[int]
) -> dict[str, dict[str, list[float]]]:
    """The two search stages timed separately, on a stratified sample of the queries."""
    stages: dict[str, dict[str, list[float]]] = {}
    for label, lib in libs.items():
        full_ms, merged_ms = [], []
        for qi in sample:
            # a library without region data searches in one stage (full results only)
            stage_fns = lib.image_stages(queries[qi]["path"], top_k=TOP_K)
            s = time.perf_counter()
            stage_fns[0]()
            t_full = time.perf_counter() - s
            for later in stage_fns[1:]:
                later()
            t_all = time.perf_counter() - s
            full_ms.append(t_full * 1000)
            merged_ms.append(t_all * 1000)
        stages[label] = {"full": full_ms, "all": merged_ms}
    return stages


def summarise_library(
    rows: list[dict[str, Any]],
    queries: list[dict[str, Any]],
    untextured: list[int],
) -> dict[str, Any]:
    """One library's figures: per query kind, and broken down the ways the README uses."""
    out: dict[str, Any] = {}
    for k in KINDS + ["all"]:
        out[k] = summarise([rows[i] for i, q in enumerate(queries) if k in ("all", q["kind"])])
    textured = [i for i, q in enumerate(queries) if q["parent"] not in untextured]
    # A group can be empty in a small run (--max-queries): its recall is nan, not a crash.
    out["textured_only"] = {
        k: summarise([rows[i] for i in textured if queries[i]["kind"] == k]).get(
            "recall@1", float("nan")
        )
        for k in KINDS
    }
    out["edits_by_kind"] = {
        e: summarise([rows[i] for i, q in enumerate(queries) if q.get("edit") == e]) for e in EDITS
    }
    out["scenes_by_frac"] = {
        f"{lo:.1f}-{lo + 0.1:.1f}": summarise(
            [
                rows[i]
                for i, q in enumerate(queries)
                if q["kind"] == "scene" and lo <= q["frac"] < lo + 0.1 + 1e-9
            ]
        ).get("recall@1", float("nan"))
        for lo in (0.3, 0.4, 0.5)
    }
    out["top1_when_missed"] = {
        k: dict(
            Counter(
                rows[i]["top1"]
                for i, q in enumerate(queries)
                if q["kind"] == k and rows[i]["rank"] != 0
            )
        )
        for k in KINDS
    }
    return out


def stage_summary(stage_ms: dict[str, list[float]], n: int) -> dict[str, Any]:
    return {
        "n": n,
        "full_median": median(stage_ms["full"]),
        "full_p90": percentile(stage_ms["full"], 90),
        "all_median": median(stage_ms["all"]),
        "all_p90": percentile(stage_ms["all"], 90),
    }


def print_matrix(summary: dict[str, dict[str, Any]]) -> None:
    """The readable table: per query kind, regions next to baseline."""
    print("\nper query kind: regions | baseline")
    head = f"{'kind':<8}{'n':>5}  " + "  ".join(
        f"{m:>15}" for m in ("recall@1", "recall@5", "mAP", "IoU>=.5", "label ok", "ms med/p90")
    )
    print(head)
    for k in KINDS + ["all"]:
        a, b = summary["regions"][k], summary["baseline"][k]

        def pair(m: str, a: dict[str, Any] = a, b: dict[str, Any] = b) -> str:
            return f"{a[m]:.3f} | {b[m]:.3f}"

        lat = f"{a['ms_median']:.0f}/{a['ms_p90']:.0f} | {b['ms_median']:.0f}/{b['ms_p90']:.0f}"
        print(
            f"{k:<8}{a['n']:>5}  "
            + "  ".join(
                f"{pair(m):>15}" for m in ("recall@1", "recall@5", "mAP", "iou>=0.5", "label_acc")
            )
            + f"  {lat:>15}"
        )


TARGETS = {
    ("regions", "crop25", "recall@1"): ">= 0.97",
    ("regions", "crop10", "recall@1"): ">= 0.90",
    ("regions", "edit", "recall@1"): ">= 0.99",
    ("regions", "scene", "recall@1"): ">= 0.90",
    ("regions", "all", "iou>=0.5"): ">= 0.80",
}
ROW_METRICS = ("recall@1", "recall@5", "mAP", "iou>=0.5", "label_acc", "ms_median", "ms_p90")


def quality_rows(summary: dict[str, dict[str, Any]]) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = []
    for label in summary:
        for k in KINDS + ["all"]:
            s = summary[label][k]
            for m in ROW_METRICS:
                if label == "baseline" and m == "iou>=0.5":
                    continue
                rows.append((f"{label} {k} {m}", s[m], TARGETS.get((label, k, m), "")))
    return rows


def latency_rows(summary: dict[str, dict[str, Any]]) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = []
    for label in summary:
        st = summary[label]["stages_ms"]
        regions = label == "regions"
        rows += [
            (
                f"{label} full-results ms median (n={st['n']})",
                st["full_median"],
                "<= 300" if regions else "",
            ),
            (f"{label} full-results ms p90", st["full_p90"], ""),
            (f"{label} all-results ms median", st["all_median"], "<= 1000" if regions else ""),
            (f"{label} all-results ms p90", st["all_p90"], ""),
        ]
    return rows


def index_rows(index_stats: dict[str, Any]) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = []
    for label, ix in index_stats.items():
        rows += [
            (f"{label} index s/image (all)", ix["per_image_s"], ""),
            (f"{label} index s/image (wallpapers)", ix["wallpapers"]["per_image_s"], ""),
            (f"{label} index s/image (distractors)", ix["distractors"]["per_image_s"], ""),
            (
                f"{label} vectors/image",
                ix["vectors_per_image"],
                "<= 10" if label == "regions" else "",
            ),
            (f"{label} keypoint bytes/image", ix["keypoint_bytes_per_image"], ""),
            (f"{label} colour-copy bytes/image", ix["colour_bytes_per_image"], ""),
        ]
    reg, base = index_stats["regions"], index_stats["baseline"]
    rows.append(
        ("index time ratio regions/baseline", reg["per_image_s"] / base["per_image_s"], "<= 3")
    )
    for part in ("wallpapers", "distractors"):
        ratio = reg[part]["per_image_s"] / base[part]["per_image_s"]
        rows.append((f"index time ratio ({part})", ratio, ""))
    return rows


def main() -> None:
    args = parse_args()
    crops = [(0.5, 1), (0.25, 1), (0.10, 2)] if not args.quick else [(0.5, 1), (0.25, 1), (0.10, 1)]
    name = "bench_regions_quick" if args.quick else "bench_regions"
    t_start = time.perf_counter()
    photos = choose_photos(args)

    work = Path(tempfile.mkdtemp(prefix="bench-regions-"))
    db_walls, db_dis, qdir = work / "db" / "walls", work / "db" / "distractors", work / "queries"
    qdir.mkdir(parents=True)
    parent_of = build_database(photos, db_walls, db_dis)
    queries, made, t_queries = generate_queries(args, photos, qdir, crops)
    runs = {
        path or "auto": run_path(path, work, db_walls, db_dis, parent_of, photos, queries, args)
        for path in args.paths
    }
    ref = next(iter(runs.values()))
    print_matrix(ref.summary)
    rows = quality_rows(ref.summary) + latency_rows(ref.summary) + index_rows(ref.ix.stats)
    if len(runs) > 1:
        rows += path_rows(runs, queries)
    rows.append(("queries", len(queries), ""))
    rows.append(("total seconds", time.perf_counter() - t_start, "< 1500"))
    seconds = {"queries_made": t_queries, "searching": sum(r.t_search for r in runs.values())}
    setup = setup_record(args, photos, crops, made, queries, seconds)
    setup["paths"] = {p: r.describe for p, r in runs.items()}
    if len(runs) > 1:
        name += "_paths"  # beside the main figures, not over them
        setup["path_summaries"] = {
            p: {label: {k: r.summary[label][k] for k in KINDS + ["all"]} for label in r.summary}
            for p, r in runs.items()
        }
    write_report(name, rows, setup, ref.ix, photos, ref.summary, queries, ref.per)
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class PathRun:
    """One inference path's figures on the shared database and queries."""

    describe: str  # the encoder as the app names it (runtime and precision)
    ix: Indexed
    per: dict[str, list[dict[str, Any]]]
    summary: dict[str, dict[str, Any]]
    t_search: float


def run_path(
    path: str,
    work: Path,
    db_walls: Path,
    db_dis: Path,
    parent_of: dict[str, int],
    photos: Photos,
    queries: list[dict[str, Any]],
    args: argparse.Namespace,
) -> PathRun:
    """Index and search with one inference path (``DESKTOP_APP_RUNTIME``; empty: auto)."""
    if path:
        os.environ[RUNTIME_ENV] = path
    else:
        os.environ.pop(RUNTIME_ENV, None)
    home = work / (path or "auto")
    home.mkdir(parents=True, exist_ok=True)
    ix = index_both(home, db_walls, db_dis, parent_of)
    describe = ix.libs["regions"].encoder.describe()
    print(f"path {path or 'auto'}: {describe}", flush=True)
    per, t_search = search_all(ix.libs, queries, parent_of, photos.designs)
    sample = stratified(queries, args.stage_sample, args.seed)
    stages = time_stages(ix.libs, queries, sample)
    summary: dict[str, dict[str, Any]] = {}
    for label in ix.libs:
        summary[label] = summarise_library(per[label], queries, ix.untextured)
        summary[label]["stages_ms"] = stage_summary(stages[label], len(sample))
    for lib in ix.libs.values():
        lib.close()
    return PathRun(describe, ix, per, summary, t_search)


def path_rows(
    runs: dict[str, PathRun], queries: list[dict[str, Any]]
) -> list[tuple[str, Any, str]]:
    """Each path's recall@1 per query kind next to the reference path's (the first), and
    how often its top result is the same file."""
    names = list(runs)
    ref = runs[names[0]]
    rows: list[tuple[str, Any, str]] = []
    print(f"\nrecall@1 per query kind and path (reference: {names[0]})")
    print(f"{'library':<10}{'kind':<8}" + "".join(f"{n:>12}" for n in names))
    for label in ref.summary:
        for k in KINDS + ["all"]:
            values = [runs[n].summary[label][k]["recall@1"] for n in names]
            print(f"{label:<10}{k:<8}" + "".join(f"{v:>12.3f}" for v in values))
            for n, v in zip(names[1:], values[1:], strict=True):
                rows.append(
                    (
                        f"path {n} {label} {k} recall@1 − {names[0]}",
                        round(v - values[0], 4),
                        "|Δ| ≤ 0.01",
                    )
                )
        for n in names[1:]:
            same = sum(
                a.get("top1") == b.get("top1") and a["rank"] == b["rank"]
                for a, b in zip(ref.per[label], runs[n].per[label], strict=True)
            )
            rows.append(
                (f"path {n} {label}: same rank of the parent", f"{same}/{len(queries)}", "")
            )
    return rows


def setup_record(
    args: argparse.Namespace,
    photos: Photos,
    crops: list[tuple[float, int]],
    made: dict[str, int],
    queries: list[dict[str, Any]],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """How the run was set up, for the JSON: enough to repeat it."""
    return {
        "seed": args.seed,
        "quick": args.quick,
        "wallpapers_dir": str(args.wallpapers),
        "wallpapers": [p.name for p in photos.walls],
        "wallpapers_dropped": photos.dropped,
        "design_groups": photos.groups,
        "distractors": len(photos.distract),
        "database_images": len(photos.walls) + len(photos.distract),
        "queries_made": made,
        "queries": dict(Counter(q["kind"] for q in queries)),
        "edits": dict(Counter(q["edit"] for q in queries if q["kind"] == "edit")),
        "crops_per_parent": {f"crop{round(a * 100)}": n for a, n in crops},
        "top_k": TOP_K,
        "torch_threads": _torch_threads(),
        "seconds": seconds,
    }


def write_report(
    name: str,
    rows: list[tuple[str, Any, str]],
    setup: dict[str, Any],
    ix: Indexed,
    photos: Photos,
    summary: dict[str, dict[str, Any]],
    queries: list[dict[str, Any]],
    per: dict[str, list[dict[str, Any]]],
) -> None:
    """The table and JSON (``report``), and the per-query detail beside them."""
    extra = {
        "setup": setup,
        "untextured_parents": {photos.walls[pi].name: ix.parent_npts[pi] for pi in ix.untextured},
        "summary": summary,
        "index": ix.stats,
    }
    report(name, rows, extra)
    detail = [
        {
            **{k: v for k, v in q.items() if k != "path"},
            "file": Path(q["path"]).name,
            "regions": per["regions"][i],
            "baseline": per["baseline"][i],
        }
        for i, q in enumerate(queries)
    ]
    (OUT / f"{name}_queries.json").write_text(json.dumps(detail, indent=1))
    print(f"per-query detail: {OUT / f'{name}_queries.json'}")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
