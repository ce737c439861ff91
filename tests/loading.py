"""The loading path as the indexer and a query take it, for fuzzing: decode, keypoints,
colour copy, frames and windows. Shared by ``tests/test_hostile.py`` and
``bench/fuzz_loading.py``."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from desktop_app.engine.colour import query_small, tiny_from_bytes, tiny_to_bytes
from desktop_app.engine.errors import ImageLoadError
from desktop_app.engine.imageio import load_image
from desktop_app.engine.regions import (
    INDEX_KEYPOINTS,
    crop_windows,
    extract_keypoints,
    find_frames,
    index_region_boxes,
    keypoints_from_bytes,
    keypoints_to_bytes,
    query_windows,
)

FUZZ_MAX_MEGAPIXELS = 4.0  # a mutated header may claim any size: keep decodes small


def seed_images() -> list[bytes]:
    """Small valid images in every format the app reads, to mutate."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8))
    out = []
    for fmt, im, kw in [
        ("JPEG", base, {}),
        ("JPEG", base, {"progressive": True}),
        ("PNG", base, {}),
        ("PNG", base.convert("P"), {"transparency": 0}),
        ("PNG", base.convert("LA"), {}),
        ("GIF", base.convert("P"), {}),
        ("BMP", base, {}),
        ("TIFF", base, {}),
        ("TIFF", base.convert("CMYK"), {}),
        ("WEBP", base, {}),
    ]:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out.append(buf.getvalue())
    return out


def exercise_loading(data: bytes, _inject: Exception | None = None) -> bool:
    """Run ``data`` through the loading path. True when it loaded; False when it was
    refused with ImageLoadError; AssertionError for anything else (a crasher)."""
    try:
        if _inject is not None:
            raise _inject
        loaded = load_image(data, max_side=1024, max_megapixels=FUZZ_MAX_MEGAPIXELS)
    except ImageLoadError as exc:
        assert exc.reason, "an ImageLoadError without a reason"
        return False
    except Exception as exc:
        raise AssertionError(f"load_image raised {type(exc).__name__}: {exc}") from exc
    try:
        image, w, h = loaded.image, loaded.width, loaded.height
        kp = extract_keypoints(image, INDEX_KEYPOINTS, orig_size=(w, h))
        keypoints_from_bytes(keypoints_to_bytes(kp))
        tiny_from_bytes(tiny_to_bytes(image, w, h))
        query_small(image)
        index_region_boxes(w, h)
        crop_windows(image, query_windows(w, h) + find_frames(image))
    except Exception as exc:
        raise AssertionError(
            f"a loaded {w}×{h} image broke analysis: {type(exc).__name__}: {exc}"
        ) from exc
    return True
