"""Partial-region matching for image-similarity search (numpy / OpenCV / PIL only).

Design (chosen by measurement: ``bench/bench_regions.py``, figures in the README):

* Vector retrieval only has to put the parent image into a *shortlist*; the
  decision "this query is (a part of) that image" and the region box come from
  local features + geometric verification, as in copy-detection systems.
* Index time, per image: the global descriptor (GeM of a 224x224 encoder pass)
  + a few region vectors (boxes from ``index_region_boxes``, pooled by the encoder's
  ``embed_regions`` from one feature map) + a compact ORB blob
  (``extract_keypoints`` -> ``keypoints_to_bytes``, ~18 KB).
* Query time: embed the query (and its mirror); optionally embed a few query
  windows (``query_windows`` and the rectangles ``find_frames`` sees) so a database
  photo pasted into a larger scene can be found; shortlist the top-N images by vector
  similarity; ``verify`` the query keypoints against each candidate's blob (ratio test
  + RANSAC similarity transform), which gives the box in the candidate's pixel
  coordinates. Ranking and the "full" / "partial" label are ``partial.py``'s.

Nothing here imports torch: the caller owns the encoder. Threads: pure functions, any
thread (loader threads at index time, the search pool at query time); the only state is
the numpy fallback's work arrays for ``_two_nearest``, one set per thread
(``threading.local``), which that thread alone uses and which go with it (a search's
verify threads end with the search). The compiled 2-NN (``_hamming``) keeps no state.
Any image size is taken, 1×1 and 65535×1 included: ORB uses only the pyramid levels an
image can hold.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np
from PIL import Image

# The compiled Hamming 2-NN (pyproject: ext-modules): optional, and used only where it
# counts bits with the CPU's own instruction (``native``); numpy's path is faster than
# counting them in software.
_compiled_two_nearest: (
    Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None] | None
)
try:
    from desktop_app.engine import _hamming

    _compiled_two_nearest = _hamming.two_nearest if _hamming.native else None
except ImportError:  # installed without a C compiler
    _compiled_two_nearest = None

# A box is (x, y, w, h). "Normalised" boxes are fractions of width/height.
Box = tuple[float, float, float, float]

# ----------------------------------------------------------------------------
# Region boxes (index side) and query windows
# ----------------------------------------------------------------------------


def _grid_boxes(side: float, n: int) -> list[Box]:
    """n x n windows of ``side`` (fraction) evenly spread over [0,1]^2."""
    if n <= 1:
        off = (1.0 - side) / 2.0
        return [(off, off, side, side)]
    step = (1.0 - side) / (n - 1)
    return [(i * step, j * step, side, side) for j in range(n) for i in range(n)]


def index_region_boxes(
    width: int,
    height: int,
    scales: Sequence[tuple[float, int]] = ((0.5, 3),),
    max_regions: int = 9,
) -> list[Box]:
    """Normalised region boxes stored as extra vectors for an indexed image.

    Default: 3x3 windows of half the width/height (stride 1/4), i.e. 9 regions
    of 25 % area; every crop with sides <= 1/4 lies fully in one window and a
    10-50 % crop overlaps one by >= ~50 %. Together with the global vector this
    is 10 vectors per image (target <= 10). For panoramas (aspect > 2.2) the
    layout becomes 2 rows x 4 columns (8 regions) so windows stay roughly
    square in pixels.
    """
    aspect = width / max(1, height)
    boxes: list[Box] = []
    for side, n in scales:
        if n >= 3 and (aspect > 2.2 or aspect < 1 / 2.2):
            # elongated image (panorama): (n-1) rows x (n+1) columns along the long axis
            nl, ns = n + 1, n - 1
            sl, ss = 1.5 / nl, min(1.0, side * 1.2)
            stepl = (1.0 - sl) / (nl - 1)
            steps = (1.0 - ss) / max(1, ns - 1)
            for a in range(ns):
                for b in range(nl):
                    if aspect > 1:
                        boxes.append((b * stepl, a * steps, sl, ss))
                    else:
                        boxes.append((a * steps, b * stepl, ss, sl))
        else:
            boxes.extend(_grid_boxes(side, n))
    return boxes[:max_regions]


def query_windows(
    width: int,
    height: int,
    scales: Sequence[tuple[float, int]] = ((0.45, 3),),
) -> list[Box]:
    """Normalised windows cut from the *query* and embedded at query time.

    They make "the query contains a database photo" (scenes, screenshots,
    collages) findable: one window roughly frames the pasted photo and its
    embedding is close to that photo's global vector. Default: 3x3 windows
    of 0.45 side (9 extra 224 px encoder passes, ~0.38 s on one core). In the
    benchmark these 9 found as many scenes as 13 windows (adding 0.6-side
    2x2); 0.6-side 2x2 + centre (5 windows) found 42 % instead of 52 %. Use
    the window vectors only to *generate candidates* (they raise false
    partial similarities for crop queries if used in the score).
    """
    del width, height  # windows are relative; kept for API symmetry
    out: list[Box] = []
    for side, n in scales:
        out.extend(_grid_boxes(side, n))
    return out


def _straight_edges(mask: np.ndarray, vertical: bool, min_len: int) -> list[tuple[float, int, int]]:
    """Long straight edge segments in a binary mask: (position, start, end)."""
    k = np.ones((min_len, 1) if vertical else (1, min_len), np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(cv2.morphologyEx(mask, cv2.MORPH_OPEN, k))
    out = []
    for x, y, w, h, _area in stats[1:n]:
        if vertical and h >= min_len and w <= 6:
            out.append((x + w / 2, int(y), int(y + h)))
        elif not vertical and w >= min_len and h <= 6:
            out.append((y + h / 2, int(x), int(x + w)))
    return out


def find_frames(image: Image.Image, side: int = 512, max_frames: int = 6) -> list[Box]:
    """Normalised boxes of rectangles framed by straight edges: a picture on a wall, a
    photo pasted into a collage or a screenshot, a product shot inside a page.

    Two long parallel edges (vertical, or horizontal) that overlap along most of their
    length make a candidate; candidates are ranked by that overlap. In ``bench_regions``
    one of six frames had IoU ≥ 0.7 with the pasted photo in 68 % of the scenes, and
    adding them to the grid windows raised the share of scenes whose photo is among the
    window hits from 83 % to 95 %. About 20-70 ms.
    """
    g = _to_gray(image)
    if min(g.shape[:2]) < 16:  # a sliver (65535×1) frames nothing; OpenCV would refuse it
        return []
    s = min(1.0, side / max(g.shape))
    if s < 1.0:
        size = (max(1, round(g.shape[1] * s)), max(1, round(g.shape[0] * s)))
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    H, W = g.shape[:2]
    gf = g.astype(np.float32)
    ax = np.abs(cv2.Sobel(gf, cv2.CV_32F, 1, 0, ksize=3))
    ay = np.abs(cv2.Sobel(gf, cv2.CV_32F, 0, 1, ksize=3))
    ev = cv2.morphologyEx(
        ((ax > 25) & (ax > 1.5 * ay)).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 1), np.uint8)
    )
    eh = cv2.morphologyEx(
        ((ay > 25) & (ay > 1.5 * ax)).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, 9), np.uint8)
    )
    cands: list[tuple[Box, float]] = []
    for vertical, edges in (
        (True, _straight_edges(ev, True, max(12, H // 8))),
        (False, _straight_edges(eh, False, max(12, W // 8))),
    ):
        for i, (pa, a0, a1) in enumerate(edges):
            for pb, b0, b1 in edges[i + 1 :]:
                overlap = min(a1, b1) - max(a0, b0)
                if abs(pb - pa) < 16 or overlap < 0.6 * max(a1 - a0, b1 - b0):
                    continue
                lo, hi = sorted((pa, pb))
                s0, s1 = min(a0, b0), max(a1, b1)
                box: Box = (lo, s0, hi - lo, s1 - s0) if vertical else (s0, lo, s1 - s0, hi - lo)
                area = box[2] * box[3] / (W * H)
                if 0.03 <= area <= 0.9 and min(box[2], box[3]) >= 16:
                    cands.append((box, overlap))
    cands.sort(key=lambda c: -c[1])
    kept: list[Box] = []
    for frame, _ in cands:
        if all(iou(frame, k) < 0.6 for k in kept):
            kept.append(frame)
            if len(kept) == max_frames:
                break
    return [(x / W, y / H, w / W, h / H) for x, y, w, h in kept]


def box_to_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Normalised box -> integer pixel box (x, y, w, h), at least 1x1."""
    x, y, w, h = box
    x0 = int(round(x * width))
    y0 = int(round(y * height))
    x1 = max(x0 + 1, int(round((x + w) * width)))
    y1 = max(y0 + 1, int(round((y + h) * height)))
    return x0, y0, x1 - x0, y1 - y0


def crop_windows(image: Image.Image, boxes: Iterable[Box]) -> list[Image.Image]:
    """Cut normalised boxes out of a PIL image (for embedding query windows)."""
    w, h = image.size
    out = []
    for b in boxes:
        x, y, bw, bh = box_to_pixels(b, w, h)
        out.append(image.crop((x, y, x + bw, y + bh)))
    return out


# ----------------------------------------------------------------------------
# Keypoints: extraction and compact serialisation
# ----------------------------------------------------------------------------


@dataclass
class Keypoints:
    """ORB keypoints of one image.

    ``xy`` are in the ORIGINAL image's pixel coordinates (whatever resolution
    the detector ran at), so boxes derived from them are directly usable.
    """

    xy: np.ndarray  # (n, 2) float32
    desc: np.ndarray  # (n, 32) uint8 (256-bit ORB)
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.xy.shape[0])


@dataclass(frozen=True)
class KeypointSettings:
    """Index side: 500 kept, spread over an 8x8 grid, detector at <= 1024 px.

    Query side uses more points (``QUERY_KEYPOINTS``) because only one image
    is processed and a small crop must still hit the parent's few points.
    """

    max_side: int = 1024
    n_keep: int = 500
    n_detect: int = 3000
    grid: int = 8
    fast_threshold: int = 4
    n_levels: int = 8
    scale_factor: float = 1.2


INDEX_KEYPOINTS = KeypointSettings()
QUERY_KEYPOINTS = KeypointSettings(n_keep=1000, n_detect=4000)


def _to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        a = np.asarray(image)
        return a if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    a = np.asarray(image)
    if a.ndim == 3:
        return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY if a.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)
    return a


def _spread(xy: np.ndarray, response: np.ndarray, w: int, h: int, grid: int, n: int) -> np.ndarray:
    """Indices of ``n`` keypoints spread over a grid (round-robin by cell rank).

    Plain "strongest n" clusters all points on the most textured area, leaving
    nothing for crops of calm parts of a photo; round-robin keeps every cell
    represented, which is what small (10 %) crops need.
    """
    if len(xy) <= n:
        return np.argsort(-response)
    cx = np.minimum((xy[:, 0] * grid / max(w, 1)).astype(int), grid - 1)
    cy = np.minimum((xy[:, 1] * grid / max(h, 1)).astype(int), grid - 1)
    cell = cy * grid + cx
    order = np.lexsort((-response, cell))  # by cell, then strongest first
    rank = np.empty(len(xy), dtype=np.int64)
    sorted_cells = cell[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_cells)) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    rank[order] = np.arange(len(order)) - np.repeat(starts, counts)
    final = np.lexsort((-response, rank))
    return final[:n]


ORB_MIN_SIDE = 2 * 15 + 2  # 2 × edgeThreshold + 2: smaller images hold no keypoint


def extract_keypoints(
    image: Image.Image | np.ndarray,
    settings: KeypointSettings = INDEX_KEYPOINTS,
    orig_size: tuple[int, int] | None = None,
) -> Keypoints:
    """Detect ORB keypoints at <= ``settings.max_side`` px and keep the best spread set.

    ``image`` may already be a reduced decode (e.g. PIL ``draft``); pass the
    original (width, height) as ``orig_size`` so the coordinates refer to the
    original pixels. Cost: ~10-25 ms per image on one core at 1024 px.
    """
    g = _to_gray(image)
    h0, w0 = g.shape[:2]
    ow, oh = orig_size if orig_size else (w0, h0)
    s = min(1.0, settings.max_side / max(w0, h0))
    if s < 1.0:
        g = cv2.resize(
            g, (max(1, round(w0 * s)), max(1, round(h0 * s))), interpolation=cv2.INTER_AREA
        )
    # ORB builds a pyramid and refuses (cv2.error) a level that rounds to 0 pixels:
    # use only levels that keep a patch's worth of pixels, none for a 1×1 or 65535×1.
    levels = settings.n_levels
    short = min(g.shape[:2])
    while levels > 1 and short / settings.scale_factor ** (levels - 1) < ORB_MIN_SIDE:
        levels -= 1
    if short < ORB_MIN_SIDE:
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), ow, oh)
    orb = cv2.ORB.create(
        nfeatures=settings.n_detect,
        scaleFactor=settings.scale_factor,
        nlevels=levels,
        fastThreshold=settings.fast_threshold,
        edgeThreshold=15,
        patchSize=31,
    )
    kps, desc = orb.detectAndCompute(g, None)
    if desc is None or not kps:
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), ow, oh)
    # KeyPoint.convert reads the 3,000 points' coordinates in C: building them from
    # Python attributes cost ~2 ms of the ~20 ms per image
    xy = np.asarray(cv2.KeyPoint.convert(kps), dtype=np.float32).reshape(-1, 2)
    resp = np.fromiter((k.response for k in kps), np.float32, len(kps))
    keep = _spread(xy, resp, g.shape[1], g.shape[0], settings.grid, settings.n_keep)
    xy = xy[keep]
    xy[:, 0] *= ow / g.shape[1]
    xy[:, 1] *= oh / g.shape[0]
    return Keypoints(xy, np.ascontiguousarray(desc[keep]), ow, oh)


_MAGIC = b"KP1"
_HDR = struct.Struct("<3sBIIH")  # magic, version, width, height, n


def keypoints_to_bytes(kp: Keypoints) -> bytes:
    """Serialise: 14-byte header + n*(2*uint16 xy + 32 B descriptor) = 36 B/point.

    Coordinates are stored in a 1/65535 grid of the original size (sub-pixel
    for any photo), so 500 points take 18 KB. Store it as a BLOB next to the
    image's vectors.
    """
    n = len(kp)
    q = np.empty((n, 2), np.uint16)
    q[:, 0] = np.clip(np.round(kp.xy[:, 0] / max(kp.width, 1) * 65535), 0, 65535)
    q[:, 1] = np.clip(np.round(kp.xy[:, 1] / max(kp.height, 1) * 65535), 0, 65535)
    return (
        _HDR.pack(_MAGIC, 1, kp.width, kp.height, n)
        + q.tobytes()
        + kp.desc.astype(np.uint8).tobytes()
    )


def keypoints_from_bytes(blob: bytes) -> Keypoints:
    """Inverse of :func:`keypoints_to_bytes`; ``ValueError`` for a short or foreign blob."""
    try:
        magic, ver, w, h, n = _HDR.unpack_from(blob, 0)
    except struct.error as exc:
        raise ValueError(f"damaged keypoint blob: {exc}") from exc
    if magic != _MAGIC or ver != 1:
        raise ValueError("not a keypoint blob")
    o = _HDR.size
    q = np.frombuffer(blob, np.uint16, count=2 * n, offset=o).reshape(n, 2)
    desc = np.frombuffer(blob, np.uint8, count=32 * n, offset=o + 4 * n).reshape(n, 32)
    xy = np.empty((n, 2), np.float32)
    xy[:, 0] = q[:, 0].astype(np.float32) * (w / 65535.0)
    xy[:, 1] = q[:, 1].astype(np.float32) * (h / 65535.0)
    return Keypoints(xy, desc.copy(), w, h)


# ----------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------


@dataclass
class Verification:
    """Result of matching a query against one candidate."""

    inliers: int
    box: tuple[int, int, int, int]  # region of the candidate seen in the query, candidate pixels
    query_box: tuple[int, int, int, int]  # where the candidate appears in the query, query pixels
    cand_coverage: float  # box area / candidate area
    query_coverage: float  # query_box area / query area
    flipped: bool
    transform: np.ndarray = field(repr=False)  # 2x3 query -> candidate


NN_ROWS = 256  # query descriptors per block of ``_two_nearest_numpy``
_work = threading.local()  # per thread: ``_two_nearest_numpy``'s reused work arrays


def _work_arrays(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's work arrays for blocks of ``NN_ROWS`` × ``m`` (flat; grown when
    ``m`` is larger than before). Reused from candidate to candidate: fresh arrays of
    this size are blocks glibc maps on their own (``engine/heap.py``), and each would
    be faulted in again, a few hundred pages per candidate."""
    have: tuple[np.ndarray, np.ndarray, np.ndarray] | None = getattr(_work, "arrays", None)
    if have is None or have[0].size < NN_ROWS * m:
        # room for a stored image's keypoints at least: sized once per verify thread
        n = NN_ROWS * max(m, INDEX_KEYPOINTS.n_keep)
        have = (np.empty(n, np.uint64), np.empty(n, np.uint8), np.empty(n, np.uint16))
        _work.arrays = have
    return have


def _two_nearest(q: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query descriptor: the Hamming distance to its nearest and second-nearest
    candidate descriptor, and the nearest one's index (the first of equals, as
    ``cv2.batchDistance(K=2)`` gives them). ``c`` holds at least 2 descriptors.

    The compiled ``_hamming`` counts bits with the CPU's own instruction (x86 POPCNT,
    ARM's), the GIL released: on a 3 MP query's 1,000 × 500 descriptors it takes a third
    of numpy's time. Without it, ``_two_nearest_numpy`` gives the same numbers."""
    compiled = _compiled_two_nearest
    if compiled is None or q.shape[1:] != (32,) or c.shape[1:] != (32,):
        return _two_nearest_numpy(q, c)
    n = len(q)
    d0 = np.empty(n, np.float32)
    d1 = np.empty(n, np.float32)
    nearest = np.empty(n, np.intp)
    compiled(np.ascontiguousarray(q, np.uint8), np.ascontiguousarray(c, np.uint8), d0, d1, nearest)
    return d0, d1, nearest


def _two_nearest_numpy(q: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_two_nearest`` without the compiled module. numpy ≥ 2 counts bits in 64-bit
    words (``bitwise_count``, GIL released): the same distances as OpenCV's K=2 search,
    and as fast or faster. The query is taken ``NN_ROWS`` descriptors at a time into
    this thread's reused work arrays, so a candidate allocates nothing large (a search
    verifies up to 65 candidates, and fresh temporaries were 18 MB per candidate). Older
    numpy takes OpenCV's path."""
    if not hasattr(np, "bitwise_count"):
        dist, nid = cv2.batchDistance(q, c, -1, normType=cv2.NORM_HAMMING, K=2)
        return dist[:, 0].astype(np.float32), dist[:, 1].astype(np.float32), nid[:, 0]
    qw = np.ascontiguousarray(q).view(np.uint64)  # (n, 4): 256 bits
    cw = np.ascontiguousarray(np.ascontiguousarray(c).view(np.uint64).T)  # (4, m)
    n, m = qw.shape[0], cw.shape[1]
    xor_flat, count_flat, dist_flat = _work_arrays(m)
    d0 = np.empty(n, np.float32)
    d1 = np.empty(n, np.float32)
    nearest = np.empty(n, np.intp)
    for start in range(0, n, NN_ROWS):
        stop = min(n, start + NN_ROWS)
        k = stop - start
        x = xor_flat[: k * m].reshape(k, m)
        bits = count_flat[: k * m].reshape(k, m)
        d = dist_flat[: k * m].reshape(k, m)  # uint16: a distance can reach 256
        block = qw[start:stop]
        d.fill(0)
        for w in range(qw.shape[1]):
            np.bitwise_xor(block[:, w : w + 1], cw[w], out=x)
            np.bitwise_count(x, out=bits)
            np.add(d, bits, out=d)
        rows = np.arange(k)
        best = d.argmin(axis=1)
        d0[start:stop] = d[rows, best]
        d[rows, best] = np.iinfo(np.uint16).max
        d1[start:stop] = d.min(axis=1)
        nearest[start:stop] = best
    return d0, d1, nearest


def _match(
    q: Keypoints, c: Keypoints, ratio: float, max_dist: int = 80
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force Hamming 2-NN (``_two_nearest``, no per-match Python objects),
    Lowe ratio test, then one match per candidate keypoint (the closest)."""
    if len(q) < 2 or len(c) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    d0, d1, nearest = _two_nearest(q.desc, c.desc)
    ok = (d0 < ratio * d1) & (d0 < max_dist)
    qi = np.flatnonzero(ok)
    ci = nearest[ok]
    if len(qi) == 0:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    order = np.argsort(d0[qi], kind="stable")
    _, first = np.unique(ci[order], return_index=True)
    keep = order[first]
    return q.xy[qi[keep]], c.xy[ci[keep]]


def _bbox(pts: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
    x0 = float(np.clip(pts[:, 0].min(), 0, w))
    y0 = float(np.clip(pts[:, 1].min(), 0, h))
    x1 = float(np.clip(pts[:, 0].max(), 0, w))
    y1 = float(np.clip(pts[:, 1].max(), 0, h))
    return int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))


def verify(
    query: Keypoints,
    cand: Keypoints,
    query_flipped: Keypoints | None = None,
    ratio: float = 0.8,
    min_inliers: int = 8,
    ransac_px: float = 6.0,
) -> Verification | None:
    """Ratio-test matches + RANSAC similarity transform (rotation/scale/shift).

    ``query_flipped`` are keypoints of the mirrored query (ORB is not mirror
    invariant); the better of both is returned. ``ransac_px`` is in pixels of
    a 1024-px version of the candidate. A similarity (4 DOF) rather than a
    homography keeps false positives low with few matches and is enough for
    crops, resizes, small rotations and pastes. Returns ``None`` below
    ``min_inliers``: 8 maximised recall; in ~170k wrong (query, candidate)
    pairs only 7 distractor pairs reached 8 inliers (max 20), so treat 8-15
    inliers as "probable" and > 20 as certain.
    The box is the query's outline projected into the candidate, clipped.
    """
    best: Verification | None = None
    thr = ransac_px * max(cand.width, cand.height) / 1024.0
    for kq, flipped in ((query, False), (query_flipped, True)):
        if kq is None:
            continue
        src, dst = _match(kq, cand, ratio)
        if len(src) < min_inliers:
            continue
        # cv2's stubs promise arrays, but RANSAC that finds no model returns (None, None).
        M, inl = cast(
            tuple[np.ndarray | None, np.ndarray | None],
            cv2.estimateAffinePartial2D(
                src,
                dst,
                method=cv2.RANSAC,
                ransacReprojThreshold=thr,
                maxIters=2000,
                confidence=0.995,
            ),
        )
        if M is None or inl is None:
            continue
        n = int(inl.sum())
        if n < min_inliers:
            continue
        scale = float(np.hypot(M[0, 0], M[1, 0]))
        if not (1e-3 < scale < 1e3):
            continue
        if best is not None and n <= best.inliers:
            continue
        qw, qh = kq.width, kq.height
        corners = np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float32)
        proj = corners @ M[:, :2].T + M[:, 2]
        box = _bbox(proj, cand.width, cand.height)
        # candidate outline -> query coordinates (where the candidate sits in the query)
        A = np.vstack([M, [0, 0, 1]])
        Ai = np.linalg.inv(A)[:2]
        cw, ch = cand.width, cand.height
        cc = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
        qproj = cc @ Ai[:, :2].T + Ai[:, 2]
        qbox = _bbox(qproj, qw, qh)
        if flipped:  # query_box was measured in the mirrored query
            qbox = (qw - qbox[0] - qbox[2], qbox[1], qbox[2], qbox[3])
        best = Verification(
            inliers=n,
            box=box,
            query_box=qbox,
            cand_coverage=box[2] * box[3] / max(1, cw * ch),
            query_coverage=qbox[2] * qbox[3] / max(1, qw * qh),
            flipped=flipped,
            transform=M,
        )
    return best


# ----------------------------------------------------------------------------
# Shortlist + aggregation
# ----------------------------------------------------------------------------


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    u = a[2] * a[3] + b[2] * b[3] - inter
    return inter / u if u > 0 else 0.0


EmbedFn = Callable[[list[Image.Image]], np.ndarray]
