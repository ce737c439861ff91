"""The inference paths compared, and indexing side by side with rclip, in one run.

    nice python bench/bench_encoders.py [--photos DIR] [--per-class 60] [--rounds 3]
                                        [--skip-paths] [--skip-index] [--skip-rclip]

1. Each encoder alone on ready tensors (batches of 16, preprocessing done), per path:
   PyTorch fp32 (and channels-last for the CNN), ONNX Runtime fp32, ONNX Runtime int8.
   The paths take turns for ``--rounds`` rounds (the machine is shared: a neighbour's
   load hits every path alike); the median is reported.
2. Each path's embeddings against PyTorch fp32 on real photos: min and mean cosine.
3. Indexing the same photos (``--per-class`` per class of the clothing set: 600) from
   scratch through the real command line, with the ViT-B-32 geometry (random weights,
   saved to a checkpoint: speed does not depend on the values): full-image vectors only,
   then with region vectors; and rclip 3.3.0 (``../shared/scripts/rclip-peer.sh`` sets it
   up, ViT-B-32-256 ONNX of random weights) on the same folder. Wall time, images/s and
   the peak resident memory of each process (``/usr/bin/time``). The one-time ONNX
   export is done before the timed runs.

CLIP figures use random weights: real CLIP weights cannot be downloaded here, so the
int8 cosine for real weights is not known from this run (the app checks it on the user's
first images and keeps fp32 when it is below 0.98).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import CLOTHING, SHARED, report  # noqa: E402

RCLIP_SCRIPT = SHARED / "scripts" / "rclip-peer.sh"
BATCH = 16


def pick_photos(source: Path, per_class: int) -> list[Path]:
    out: list[Path] = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg"))
        out.extend(files[:per_class])
    return out


def clip_checkpoint(path: Path) -> Path:
    import open_clip
    import torch

    if not path.exists():
        torch.manual_seed(0)
        torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), path)
    return path


# -- 1 and 2: the encoder alone, per path ---------------------------------------------
class Path_:
    """One inference path of one model: ``run`` takes a ready (n, 3, h, w) float batch."""

    def __init__(self, name: str, encoder: Any, channels_last: bool = False) -> None:
        import torch

        self.name, self.encoder = name, encoder
        if channels_last and getattr(encoder, "net", None) is not None:
            # a channels-last network makes the convolutions run channels-last
            encoder.net = encoder.net.to(memory_format=torch.channels_last)

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        enc = self.encoder
        if hasattr(enc, "feature_maps"):  # the CNN: GeM-pooled feature map
            from desktop_app.engine.encoders.efficientnet import gem

            return gem(enc.feature_maps(batch))
        if enc._visual is not None:
            return np.asarray(enc._visual.run(batch)[0])
        with torch.inference_mode():
            return np.asarray(enc.model.encode_image(torch.from_numpy(batch)).numpy())


def ready_batch(encoder: Any, images: list[Any]) -> np.ndarray:
    if hasattr(encoder, "feature_maps"):
        from desktop_app.engine.encoders.efficientnet import (
            INPUT_SIZE,
            MEAN,
            STD,
            images_to_array,
        )

        return images_to_array(images, INPUT_SIZE, MEAN, STD)
    return np.stack([encoder.preprocess(im) for im in images])


def compare_paths(
    label: str, spec: str, photos: list[Path], rounds: int, cache: Path
) -> tuple[list[tuple[str, Any, str]], dict[str, Any]]:
    from PIL import Image

    from desktop_app.engine.encoders import l2_normalise, load_encoder

    runtimes = [("torch fp32", "torch", False)]
    if not spec.startswith("ViT"):
        runtimes.append(("torch fp32 channels-last", "torch", True))
    runtimes += [("onnx fp32", "onnx", False), ("onnx int8", "onnx-int8", False)]
    if not spec.startswith("ViT"):  # int8 dynamic quantises MatMul/Gemm only: a CNN gains nothing
        runtimes = runtimes[:-1]
    paths = []
    for name, runtime, cl in runtimes:
        enc = load_encoder(spec, "cpu", batch_size=BATCH, runtime=runtime, cache_dir=cache)
        paths.append(Path_(name, enc, cl))
    images = [Image.open(p).convert("RGB") for p in photos]
    batch = ready_batch(paths[0].encoder, images[:BATCH])
    # settle the int8 guard (it checks against fp32 on its first images) before timing
    for p in paths:
        ready = ready_batch(p.encoder, images[:32])
        for i in range(0, len(ready), BATCH):
            p.run(ready[i : i + BATCH])
    times: dict[str, list[float]] = {p.name: [] for p in paths}
    for _ in range(rounds):
        for p in paths:
            started = time.perf_counter()
            p.run(batch)
            times[p.name].append(time.perf_counter() - started)
    # embeddings of every photo by every path, against torch fp32
    vectors = {}
    for p in paths:
        parts = [
            p.run(ready_batch(p.encoder, images[i : i + BATCH]))
            for i in range(0, len(images), BATCH)
        ]
        vectors[p.name] = l2_normalise(np.concatenate(parts))
    rows: list[tuple[str, Any, str]] = []
    extra: dict[str, Any] = {}
    reference = vectors["torch fp32"]
    for p in paths:
        rate = BATCH / statistics.median(times[p.name])
        cos = (vectors[p.name] * reference).sum(axis=1)
        rows.append((f"{label} {p.name}: images/s (encoder alone)", round(rate, 1), ""))
        rows.append(
            (f"{label} {p.name}: cosine to torch fp32, min", round(float(cos.min()), 5), "≥ 0.98")
        )
        extra[f"{label} {p.name}"] = {
            "images_per_s": rate,
            "cos_min": float(cos.min()),
            "cos_mean": float(cos.mean()),
            "seconds_per_batch": times[p.name],
            "describe": p.encoder.describe(),
        }
    return rows, extra


# -- 3: indexing side by side --------------------------------------------------------
def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one process."""
    fmt = "__TIME__ %e %M"
    proc = subprocess.run(
        ["/usr/bin/time", "-f", fmt, *cmd],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        check=False,
    )
    line = next((x for x in proc.stderr.splitlines() if x.startswith("__TIME__")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    _, wall, kb = line.split()
    return float(wall), int(kb) / 2**20


def index_side_by_side(
    photos: list[Path], ckpt: Path, work: Path, skip_rclip: bool
) -> tuple[list[tuple[str, Any, str]], dict[str, Any]]:
    lib = work / "photos"
    lib.mkdir()
    for i, p in enumerate(photos):
        shutil.copy2(p, lib / f"{i:05d}-{p.parent.name}-{p.name}")
    warm = work / "warm"
    warm.mkdir()
    for p in photos[:24]:
        shutil.copy2(p, warm / p.name)
    env = {"DESKTOP_APP_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
    app = [sys.executable, "-m", "desktop_app", "index"]
    model = ["--model", f"ViT-B-32:{ckpt}", "--json"]
    # the one-time ONNX export (and the int8 check) happens here, outside the timings
    timed([*app, str(warm), *model, "--data-dir", str(work / "warm-data")], env)
    runs: dict[str, tuple[float, float]] = {}
    n = len(photos)
    for name, extra_args in (
        ("desktop-app full only", ["--no-regions"]),
        ("desktop-app regions", []),
    ):
        data = work / f"data-{len(runs)}"
        runs[name] = timed([*app, str(lib), *model, "--data-dir", str(data), *extra_args], env)
    if not skip_rclip:
        setup = subprocess.run(
            ["bash", str(RCLIP_SCRIPT)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "TORCHPY": sys.executable},
        )
        if setup.returncode != 0:
            raise RuntimeError(f"{RCLIP_SCRIPT} failed:\n{setup.stderr[-2000:]}")
        exe = setup.stdout.strip().splitlines()[-1]
        rdata = Path(os.environ.get("RCLIP_PEER_DATA", "/tmp/rclip-data"))
        (rdata / "db.sqlite3").unlink(missing_ok=True)
        runs["rclip 3.3.0"] = timed(
            [exe, "-f", "-t", "1", "a photo"], {"RCLIP_DATADIR": str(rdata)}, cwd=lib
        )
    rows: list[tuple[str, Any, str]] = []
    peer = runs.get("rclip 3.3.0")
    for name, (wall, gb) in runs.items():
        target = ""
        if peer and name == "desktop-app full only":
            target = f"≥ 1.5× rclip ({n / peer[0] * 1.5:.1f}); peak ≤ {peer[1]:.2f} GB"
        elif peer and name == "desktop-app regions":
            target = f"≥ 0.75× rclip ({n / peer[0] * 0.75:.1f}); peak ≤ {peer[1]:.2f} GB"
        rows.append((f"index {n} photos, {name}: images/s", round(n / wall, 2), target))
        rows.append((f"index {n} photos, {name}: peak RSS GB", round(gb, 3), ""))
    extra = {"index": {k: {"seconds": w, "peak_rss_gb": g} for k, (w, g) in runs.items()}}
    return rows, extra


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=CLOTHING / "train")
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cosine-photos", type=int, default=64)
    ap.add_argument("--skip-paths", action="store_true", help="only the indexing runs (3)")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--skip-rclip", action="store_true")
    args = ap.parse_args()
    photos = pick_photos(args.photos, args.per_class)
    if not photos:
        sys.exit(f"no photos under {args.photos}")
    work = Path(tempfile.mkdtemp(prefix="bench-encoders-"))
    os.environ["DESKTOP_APP_HOME"] = str(work / "home")
    ckpt = clip_checkpoint(work / "random-vit-b-32.pt")
    cache = work / "home" / "cache" / "onnx"
    rows: list[tuple[str, Any, str]] = []
    extra: dict[str, Any] = {"cpu": _cpu(), "photos": len(photos), "source": str(args.photos)}
    sample = photos[:: max(1, len(photos) // args.cosine_photos)][: args.cosine_photos]
    try:
        for label, spec in (
            ()
            if args.skip_paths
            else (("efficientnet-lite0", "efficientnet-lite0"), ("ViT-B-32", f"ViT-B-32:{ckpt}"))
        ):
            r, e = compare_paths(label, spec, sample, args.rounds, cache)
            rows += r
            extra.update(e)
        if not args.skip_index:
            r, e = index_side_by_side(photos, ckpt, work, args.skip_rclip)
            rows += r
            extra.update(e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report("bench_encoders", rows, extra)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return f"{os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    main()
