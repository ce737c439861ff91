"""A library moved to a Chroma server and searched from a second client (issue 13).

    python bench/bench_server.py [--n 1000] [--model efficientnet-lite0] [--latency 100]

1. Index ``n`` real photos (the clothing set) into an embedded library with regions
   (reused under bench/out/server/ when already indexed).
2. Start ``chroma run`` on 127.0.0.1 (fresh directory, free port) and ``store push`` the
   library to it: the number re-embedded must be 0.
3. A second client (its own, empty data dir, another machine name) searches a crop of
   every image through the server: the middle half of the photo at a random place,
   downscaled to 3/4 and saved as JPEG. Found = the source photo ranks first, as a
   partial match (the partial-match machinery: region vectors, keypoints and colour
   copies read from the server, since this client indexed nothing).
4. Query latency on the same library, the same queries: full-image stage and all stages
   (partial matches merged), through the server and through the embedded store.

Also reported: the server process's resident memory after the push.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import OUT, copy_photos, median, percentile, real_photos, report  # noqa: E402

CHROMA = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(path), "--port", str(port), "--host", "127.0.0.1"],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"chroma run exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("chroma run did not listen within 60 s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (Linux /proc)."""
    total = 0
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def make_crop(photo: Path, dest: Path, rng: random.Random) -> Path:
    from PIL import Image

    im = Image.open(photo).convert("RGB")
    w, h = im.size
    cw, ch = w // 2, h // 2
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    part = im.crop((x, y, x + cw, y + ch))
    part.resize((cw * 3 // 4, ch * 3 // 4)).save(dest, quality=90)
    return dest


def timed_stages(lib: object, query: Path) -> tuple[float, float, list]:
    started = time.perf_counter()
    stages = lib.image_stages(query, top_k=10)  # type: ignore[attr-defined]
    results = stages[0]()
    t_full = time.perf_counter() - started
    for stage in stages[1:]:
        results = stage()
    return t_full * 1000, (time.perf_counter() - started) * 1000, results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--latency", type=int, default=100, help="queries timed on both stores")
    ap.add_argument("--photos", type=Path, default=None)
    args = ap.parse_args()
    if not CHROMA.exists():
        sys.exit(f"no chroma command at {CHROMA}")

    base = OUT / f"server{args.n}-{args.model.replace(':', '_').replace('/', '_')}"
    os.environ["DESKTOP_APP_HOME"] = str(base / "home")
    from desktop_app.engine.library import Library
    from desktop_app.engine.settings import Settings
    from desktop_app.engine.transfer import push

    photos_dir = base / "photos"
    if not photos_dir.exists():
        kw = {"source": args.photos} if args.photos else {}
        copy_photos(real_photos(args.n, **kw), photos_dir)
    photos = sorted(p.resolve() for p in photos_dir.iterdir())  # results carry real paths
    embedded_dir = base / "embedded"
    settings = Settings(model=args.model, regions_enabled=True, machine_name="indexer")
    with Library.open(embedded_dir, settings=settings) as lib:
        for p in lib.index([photos_dir]):
            if p.summary:
                s = p.summary
                print(f"index: {s.embedded} embedded, {s.unchanged} unchanged ({s.seconds:.0f} s)")
        vectors = lib.status(load_encoder=False).vectors

    server_dir = base / "chroma-server"
    shutil.rmtree(server_dir, ignore_errors=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(server_dir, port, base / "chroma.log")
    try:
        rss_before = rss_mb(proc.pid)
        pushed = push(embedded_dir, url)
        time.sleep(2)
        rss_after = rss_mb(proc.pid)
        print(f"push: {pushed.to_json()}")

        rng = random.Random(13)
        crops_dir = base / "crops"
        shutil.rmtree(crops_dir, ignore_errors=True)
        crops_dir.mkdir()
        queries = [(p, make_crop(p, crops_dir / f"crop-{p.name}", rng)) for p in photos]

        found1 = found5 = partial1 = 0
        misses: list[str] = []
        client = Library.open(
            base / "second-client",
            settings=Settings(model=args.model, machine_name="second"),
            store_url=url,
        )
        try:
            client.search_image(queries[0][1])  # load the model before timing anything
            started = time.perf_counter()
            for photo, query in queries:
                _, _, results = timed_stages(client, query)
                paths = [r.path for r in results]
                if paths[:1] == [str(photo)]:
                    found1 += 1
                    partial1 += results[0].match == "partial"
                else:
                    misses.append(photo.name)
                found5 += str(photo) in paths[:5]
            crop_seconds = time.perf_counter() - started
            sample = rng.sample(queries, min(args.latency, len(queries)))
            server_ms = [timed_stages(client, q)[:2] for _, q in sample]
        finally:
            client.close()
        with Library.open(embedded_dir, settings=settings) as lib:
            lib.search_image(sample[0][1])
            embedded_ms = [timed_stages(lib, q)[:2] for _, q in sample]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    n = len(queries)
    total_vectors = sum(vectors.values())
    rows = [
        ("images", n, f"{args.n}"),
        ("model", args.model, ""),
        ("vectors (full + region)", total_vectors, str(vectors)),
        ("push: re-embedded", pushed.embedded, "0"),
        ("push: contents / files", f"{pushed.contents} / {pushed.files}", ""),
        ("push: seconds", pushed.seconds, ""),
        ("crops found first, 2nd client via server", f"{found1}/{n}", f"{n}/{n}"),
        ("crops found in top 5", f"{found5}/{n}", ""),
        ("first result labelled partial", f"{partial1}/{found1}", ""),
        ("crop queries: seconds for all", crop_seconds, ""),
        ("server RSS after push MB", rss_after, f"before {rss_before:.0f}"),
        ("server RSS per vector KB", (rss_after - rss_before) * 1024 / total_vectors, ""),
        ("latency queries", len(server_ms), ""),
        ("full stage, server: median ms", median([f for f, _ in server_ms]), ""),
        ("full stage, server: p90 ms", percentile([f for f, _ in server_ms], 90), ""),
        ("full stage, embedded: median ms", median([f for f, _ in embedded_ms]), ""),
        ("full stage, embedded: p90 ms", percentile([f for f, _ in embedded_ms], 90), ""),
        ("all stages, server: median ms", median([a for _, a in server_ms]), ""),
        ("all stages, server: p90 ms", percentile([a for _, a in server_ms], 90), ""),
        ("all stages, embedded: median ms", median([a for _, a in embedded_ms]), ""),
        ("all stages, embedded: p90 ms", percentile([a for _, a in embedded_ms], 90), ""),
    ]
    report(f"bench_server_{args.n}", rows, {"misses": misses[:50], "push": pushed.to_json()})


if __name__ == "__main__":
    main()
