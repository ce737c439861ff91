"""Fuzz the image loading path at scale: decode, keypoints, colour copy, frames and
windows on arbitrary bytes and on mutated valid images of every format the app reads.

    python bench/fuzz_loading.py --inputs 100000 [--seed 0] [--workers 2]

Prints a table and a JSON line: inputs run, how many loaded or were refused (an
ImageLoadError with its reason, as it should be), and every crasher (any other exception),
which is saved under tests/fixtures/crashers/ so ``tests/test_hostile.py`` keeps it as a
regression test. The same harness runs 300 examples in the test suite (hypothesis); this
is the long run. Pillow's warnings are silenced as in the app (they are log lines there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.loading import exercise_loading, seed_images  # noqa: E402

CRASHERS = ROOT / "tests" / "fixtures" / "crashers"


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """Arbitrary bytes (1 in 8), else a valid image with a few bytes changed, a run
    duplicated, or its tail cut: the shapes damaged files take."""
    if rng.random() < 0.125:
        return rng.randbytes(rng.randint(0, 600))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        pos = rng.randrange(len(data)) if data else 0
        if op < 0.6 and data:
            data[pos] = rng.randrange(256)
        elif op < 0.75 and data:
            data[pos : pos + 1] = data[pos : pos + rng.randint(1, 64)] * 2
        elif op < 0.9:
            data = data[: rng.randint(0, len(data))]
        elif data:  # an interesting integer into a header field
            value = rng.choice([0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])
            data[pos : pos + 4] = value.to_bytes(4, rng.choice(["big", "little"]))
    return bytes(data)


def run_chunk(args: tuple[int, int]) -> dict:
    seed, count = args
    warnings.simplefilter("ignore")
    rng = random.Random(seed)
    seeds = seed_images()
    loaded = refused = 0
    crashers: list[tuple[str, bytes]] = []
    for _ in range(count):
        data = mutate(rng, seeds)
        try:
            if exercise_loading(data):
                loaded += 1
            else:
                refused += 1
        except AssertionError as exc:
            crashers.append((str(exc)[:300], data))
    return {"loaded": loaded, "refused": refused, "crashers": crashers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=2_000)
    args = ap.parse_args()
    started = time.monotonic()
    chunks = [
        (args.seed * 1_000_003 + i, min(args.chunk, args.inputs - start))
        for i, start in enumerate(range(0, args.inputs, args.chunk))
    ]
    loaded = refused = 0
    crashers: list[tuple[str, bytes]] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for res in pool.map(run_chunk, chunks):
            loaded += res["loaded"]
            refused += res["refused"]
            crashers += res["crashers"]
    seconds = time.monotonic() - started
    if crashers:
        CRASHERS.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, int] = {}
    for message, data in crashers:
        (CRASHERS / f"{hashlib.blake2b(data, digest_size=8).hexdigest()}.bin").write_bytes(data)
        kinds[message.split(":")[0]] = kinds.get(message.split(":")[0], 0) + 1
    total = loaded + refused + len(crashers)
    print(f"{'inputs':<10}{'loaded':>10}{'refused':>10}{'crashers':>10}{'seconds':>10}")
    print(f"{total:<10}{loaded:>10}{refused:>10}{len(crashers):>10}{seconds:>10.0f}")
    for message, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {n} × {message}")
    print(
        json.dumps(
            {
                "inputs": total,
                "loaded": loaded,
                "refused": refused,
                "crashers": len(crashers),
                "crasher_kinds": kinds,
                "seconds": round(seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
