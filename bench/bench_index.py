"""Engine-core acceptance, measured through the real command line on real photos.

    python bench/bench_index.py [--photos DIR] [--n 200]

Index N photos with the offline encoder, re-index (nothing to embed, a tenth of the
time), rename/move/delete/rewrite files, query every photo with itself, index a folder
of broken inputs, delete the vector index and rebuild it from the catalog.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CLOTHING, cli, copy_photos, last_json, real_photos, report  # noqa: E402

MODEL = ["--model", "efficientnet-lite0"]


def make_broken(folder: Path, good: list[Path]) -> dict[str, str]:
    """Each kind of bad input the acceptance names, plus valid-but-unusual files."""
    folder.mkdir()
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[0].read_bytes()[:4000])
    (folder / "text.jpg").write_text("not a jpeg at all")
    Image.new("1", (20000, 20000)).save(folder / "huge-20000x20000.png")
    Image.open(good[1]).convert("CMYK").save(folder / "cmyk.jpg")
    grey16 = np.asarray(Image.open(good[2]).convert("L"), np.uint16) * 257
    Image.fromarray(grey16).save(folder / "sixteen-bit.png")
    frames = [Image.open(good[3]).convert("RGB"), Image.new("RGB", (80, 80), "red")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    shutil.copy2(good[4], folder / "no-permission.jpg")
    (folder / "no-permission.jpg").chmod(0)
    for g in good[5:10]:
        shutil.copy2(g, folder / g.name)
    return {"expected_good": "cmyk.jpg sixteen-bit.png animated.gif + 5 photos"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=CLOTHING)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    env = {"DESKTOP_APP_HOME": str(work / "home")}
    lib = work / "photos"
    sources = real_photos(args.n + 10, source=args.photos)
    files = copy_photos(sources[: args.n], lib)
    rows: list[tuple[str, object, str]] = []

    t1, out = cli("index", str(lib), *MODEL, "--json", env=env)
    first = last_json(out)
    t2, out = cli("index", str(lib), *MODEL, "--json", env=env)
    second = last_json(out)
    rows += [
        ("first index: photos", first["seen"], ""),
        ("first index: embedded", first["embedded"], f"= {args.n}"),
        ("first index: seconds (wall)", t1, ""),
        ("first index: photos/s", first["embedded"] / t1, ""),
        ("second index: embedded", second["embedded"], "= 0"),
        ("second index: seconds (wall)", t2, ""),
        ("second/first time ratio", t2 / t1, "< 0.1"),
    ]

    rng = random.Random(1)
    chosen = rng.sample(files, 35)
    renamed = [f.rename(f.with_name("renamed-" + f.name)) for f in chosen[:10]]
    (lib / "sub").mkdir()
    moved = [Path(shutil.move(f, lib / "sub" / f.name)) for f in chosen[10:20]]
    _, out = cli("index", str(lib), *MODEL, "--json", env=env)
    after_move = last_json(out)
    _, out = cli("search", *map(str, renamed + moved), "--top-k", "1", "--json", env=env)
    found_new = sum(
        json.loads(line)["results"][0]["path"] == json.loads(line)["query"]
        for line in out.strip().splitlines()
    )
    rows += [
        ("rename 10 + move 10: embedded", after_move["embedded"], "= 0"),
        ("rename 10 + move 10: reused", after_move["reused"], "= 20"),
        ("renamed/moved found at new path", found_new, "= 20"),
    ]

    deleted = chosen[20:30]
    for f in deleted:
        f.unlink()
    _, out = cli("index", str(lib), *MODEL, "--json", env=env)
    after_delete = last_json(out)
    survivors = [f for f in lib.rglob("*.jpg")]
    _, out = cli("search", *map(str, survivors[:40]), "--top-k", str(args.n), "--json", env=env)
    returned = {r["path"] for line in out.strip().splitlines() for r in json.loads(line)["results"]}
    rows += [
        ("delete 10: removed", after_delete["removed"], "= 10"),
        ("deleted files in any result", len(returned & {str(f) for f in deleted}), "= 0"),
    ]

    rewritten = [f for f in survivors if f.parent == lib][:5]
    for i, f in enumerate(rewritten):
        arr = np.random.default_rng(i).integers(0, 255, (200, 150, 3), np.uint8)
        Image.fromarray(arr).save(f, "JPEG", quality=90)
    _, out = cli("index", str(lib), *MODEL, "--json", env=env)
    rows.append(("rewrite 5: embedded", last_json(out)["embedded"], "= 5"))

    all_files = sorted(lib.rglob("*.jpg"))
    _, out = cli("search", *map(str, all_files), "--top-k", "1", "--json", env=env)
    lines = [json.loads(line) for line in out.strip().splitlines()]
    self_first = sum(q["results"][0]["path"] == q["query"] for q in lines)
    min_score = min(q["results"][0]["score"] for q in lines)
    rows += [
        ("self-queries", len(lines), ""),
        ("self-query first", self_first, f"= {len(lines)}"),
        ("self-query lowest top score", min_score, ">= 0.99"),
    ]

    broken = work / "broken"
    make_broken(broken, sources[args.n :])
    _, out = cli("index", str(broken), *MODEL, "--json", env=env)
    bsum = last_json(out)
    _, out = cli("status", "--json", env=env)
    status = last_json(out)
    listed = {f["path"]: f["reason"] for f in status["failures"]}
    good = [p for p in broken.iterdir() if str(p) not in listed]
    _, out = cli("search", *map(str, good), "--top-k", "1", "--json", env=env)
    good_found = sum(
        json.loads(line)["results"][0]["path"] == json.loads(line)["query"]
        for line in out.strip().splitlines()
    )
    rows += [
        ("broken folder: seen", bsum["seen"], ""),
        ("broken folder: failed (listed)", len(listed), ""),
        ("good files beside them found", f"{good_found}/{len(good)}", "all"),
    ]

    shutil.rmtree(work / "home" / "data" / "chroma")
    t, out = cli("index", str(lib), *MODEL, "--json", env=env)
    rebuilt = last_json(out)
    _, out = cli("search", str(all_files[0]), "--top-k", "1", "--json", env=env)
    rows += [
        ("rebuild after deleting Chroma: embedded", rebuilt["embedded"], "= 0"),
        ("rebuild: seconds", t, ""),
        (
            "rebuild: self-query works",
            last_json(out)["results"][0]["path"] == str(all_files[0]),
            "True",
        ),
    ]
    report("bench_index", rows, {"failures": listed})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
