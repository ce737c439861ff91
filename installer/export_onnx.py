"""Export the offline encoder to ONNX at build time, for a bundle without PyTorch.

    .venv-build/bin/python installer/export_onnx.py OUT_DIR

Runs in the build venv (which has torch), called by installer/build.py before
PyInstaller for the variants that leave torch out (installer/manifest.py). The export is
made by the app's own code (``EfficientNetLite0`` with the ONNX runtime, into a fresh
cache), then copied with an index into OUT_DIR, which the spec bundles as
``onnx-models/``; the frozen app finds it there before any cache
(``onnx_cache.bundled_export``). Before it is accepted, the export and PyTorch embed the
sample photos the app ships, and every cosine must be at least ``MIN_COSINE``: the
numpy preprocessing and the graph must give what the torch path gives.

Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifest as m  # noqa: E402

sys.path.insert(0, str(m.ROOT))
from desktop_app.engine.encoders.efficientnet import EfficientNetLite0  # noqa: E402
from desktop_app.engine.encoders.onnx_cache import bundle_exports  # noqa: E402
from desktop_app.engine.encoders.runtime import ONNX, TORCH, cosines  # noqa: E402

MIN_COSINE = 0.999


def sample_images() -> list[Image.Image]:
    photos = sorted(p for p in m.SAMPLES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    images = []
    for photo in photos:
        with Image.open(photo) as im:
            images.append(im.convert("RGB"))
    return images


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Export the offline encoder for the bundle.")
    p.add_argument("out", type=Path, help="folder the spec bundles as onnx-models/")
    args = p.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    images = sample_images()
    with tempfile.TemporaryDirectory(prefix="desktop-app-export-") as tmp:
        cache = Path(tmp)
        exported = EfficientNetLite0("cpu", runtime=ONNX, cache_dir=cache)
        if exported.runtime != ONNX:
            raise SystemExit("[export] the ONNX export failed (see the log above)")
        reference = EfficientNetLite0("cpu", runtime=TORCH, cache_dir=cache)
        worst = float(cosines(exported.embed_images(images), reference.embed_images(images)).min())
        boxes = [[(0.1, 0.1, 0.5, 0.5), (0.4, 0.3, 0.6, 0.7)]] * len(images)
        regions = zip(
            exported.embed_regions(images, boxes),
            reference.embed_regions(images, boxes),
            strict=True,
        )
        worst_region = min(float(cosines(a, b).min()) for a, b in regions)
        if min(worst, worst_region) < MIN_COSINE:
            raise SystemExit(
                f"[export] ONNX and PyTorch embeddings differ: worst cosine {worst:.5f} "
                f"(whole images), {worst_region:.5f} (regions); wanted >= {MIN_COSINE}"
            )
        entries = bundle_exports(cache, args.out)
    if not entries:
        raise SystemExit("[export] nothing was exported")
    size = sum(f.stat().st_size for f in args.out.iterdir())
    summary = {
        "exports": entries,
        "bytes": size,
        "images": len(images),
        "worst_cosine_images": round(worst, 6),
        "worst_cosine_regions": round(worst_region, 6),
        "dim": int(np.asarray(exported.embed_images(images[:1])).shape[-1]),
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
