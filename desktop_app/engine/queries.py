"""Turning what the user asked into :class:`QueryFeatures`: an image (file, bytes or
Pillow image, optionally a region of it) or an indexed file's stored data.

Threads: everything runs on the caller's thread (a search pool thread), except that
``load_partial`` computes the query's keypoints and colour copy on one short-lived side
thread while it embeds the windows, and joins it before returning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from desktop_app.engine.analysis import KEYPOINTS, REGION_FULL, TINY
from desktop_app.engine.cleanup import NO_CLEANUP, Cleanup, clean_query
from desktop_app.engine.colour import query_small, tiny_from_bytes
from desktop_app.engine.encoders import Encoder
from desktop_app.engine.errors import DesktopAppError, NotIndexed
from desktop_app.engine.imageio import load_image
from desktop_app.engine.partial import QueryFeatures
from desktop_app.engine.regions import (
    QUERY_KEYPOINTS,
    crop_windows,
    extract_keypoints,
    find_frames,
    keypoints_from_bytes,
    query_windows,
)
from desktop_app.engine.search import Box, ContentReader
from desktop_app.engine.sidetask import beside

QUERY_SIDE = 1024  # enough for keypoints; the encoder needs far less
# a JPEG query may decode at a reduced scale down to this long side (imageio's draft):
# keypoints at 1000 px find what they find at 1024, and a 3 or 12 MP photo then decodes
# at 1/2 or 1/4 scale instead of in full (most of the full stage's time at 3 MP). Not
# lower: at 768 a 1600×1200 scene decoded at 800 px, and a photo pasted at 18 % of its
# height was verified in 0 of 8 scenes instead of 5 (fewer keypoints on it)
QUERY_DRAFT_FLOOR = 1000
ImageSource = Path | str | bytes | Image.Image


def image_query(
    encoder: Encoder,
    source: ImageSource,
    region: Box | None = None,
    max_megapixels: float = 100.0,
    cleanup: Cleanup = NO_CLEANUP,
) -> QueryFeatures:
    """Embed the query (and its mirror image: flipped copies match too) right away; the
    windows and keypoints for partial matching when the partial stage asks."""
    loaded = load_image(
        source, max_side=QUERY_SIDE, max_megapixels=max_megapixels, draft_floor=QUERY_DRAFT_FLOOR
    )
    image, size = clean_query(loaded.image, cleanup), (loaded.width, loaded.height)
    if region is not None:
        image, size = crop_region(image, region, loaded.scale, size)
    mirror = ImageOps.mirror(image)
    q = QueryFeatures(encoder.embed_images([image, mirror]))
    if isinstance(source, str | Path) and region is None:
        q.prefer_path = str(Path(source).resolve())

    def local_features() -> None:
        q.small = query_small(image)
        q.keypoints = extract_keypoints(image, QUERY_KEYPOINTS, orig_size=size)
        q.keypoints_flipped = extract_keypoints(mirror, QUERY_KEYPOINTS, orig_size=size)

    def embed_windows() -> None:
        windows = query_windows(*size) + find_frames(image)
        regional = encoder.region_encoder  # windows live in the region vectors' space
        q.windows = regional.embed_in_batches(crop_windows(image, windows))
        if regional is not encoder:
            q.region_vectors = regional.embed_images([image, mirror])
        q.region_scaled = regional.embed_as_regions([image, mirror])

    def load_partial() -> None:
        # Keypoints and the colour copy (OpenCV, GIL released) are computed on a side
        # thread while the windows are embedded here (ONNX Runtime / torch, GIL released
        # too): the two halves of this step overlap instead of adding up. The side thread
        # writes only its own three fields and is joined before anything reads them.
        beside(local_features, embed_windows, "query-features")
        q.load_partial = None

    q.load_partial = load_partial
    return q


def stored_query(catalog: ContentReader, encoder_id: str, path: Path | str) -> QueryFeatures:
    """ "Find similar" for an indexed file: its stored vectors and keypoints, nothing
    decoded or embedded. Its region vectors serve as the query windows."""
    key = str(Path(path).expanduser().resolve())
    row = catalog.file(key)
    if row is None or not row.ok or row.fingerprint is None:
        raise NotIndexed(f"{key} is not in the index")
    fp = row.fingerprint
    full = [r.vector for r in catalog.vectors(encoder_id, "full", [fp])]
    if not full:
        raise NotIndexed(f"{key} has no vector for {encoder_id}; run index first")
    q = QueryFeatures(np.stack(full), prefer_path=key)
    regions = [r.vector for r in catalog.vectors(encoder_id, "region", [fp])]
    q.windows = np.stack(regions) if regions else None
    region_full = [r.vector for r in catalog.vectors(encoder_id, REGION_FULL, [fp])]
    q.region_vectors = np.stack(region_full) if region_full else None
    blob = catalog.features(KEYPOINTS, [fp]).get(fp)
    q.keypoints = keypoints_from_bytes(blob) if blob else None
    tiny = catalog.features(TINY, [fp]).get(fp)
    q.small = tiny_from_bytes(tiny).pixels if tiny else None
    return q


def crop_region(
    image: Image.Image, region: Box, scale: float, full_size: tuple[int, int]
) -> tuple[Image.Image, tuple[int, int]]:
    """Cut ``region`` (full-size pixels) out of ``image`` (reduced by ``scale``)."""
    x, y, w, h = region
    fw, fh = full_size
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise DesktopAppError(
            f"region {list(region)} lies outside the {fw}×{fh} image or is smaller than 8 pixels"
        )
    box = (round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale))
    return image.crop(box), (x1 - x0, y1 - y0)
