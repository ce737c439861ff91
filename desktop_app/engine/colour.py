"""Colour-layout matching: the second way of confirming a partial match.

Keypoints (``regions.verify``) confirm textured matches, but a crop of a sky, a gradient
wallpaper or a studio backdrop has no corners to match: in ``bench_regions`` a quarter
of the 10 % crops had no keypoints at all on one side. What such a crop does have is an
exact colour layout, and a stored image it came from contains that layout at one place
and one scale. So each indexed image keeps a tiny colour copy (``TINY_SIDE`` pixels on
the long side, JPEG, about 2 KB), and at query time the query is slid over it at a range
of scales (``match_inside``: the query is part of the stored image), or the stored image
over the query (``match_contains``: the query contains it, as a pasted or photographed
picture). The result is the root-mean-square colour difference (0-255 levels) at the
best place, and the box it implies.

Measured on the ``bench_regions`` library (84 wallpapers, 300 distractors, top-20
candidates of the real search): the true parent of a crop has a median RMSE of 7-9 and a
90th percentile of 17-19, while the closest wrong candidate has a 10th percentile of
12-17 and a median near 30. As a tier between "keypoints verified" and "similar", with
``MAX_RMSE`` = 14, it lifted recall@1 of 10 % crops from 0.85 to 0.96 and lost nothing
on any other kind.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from desktop_app.engine.imageio import fit_size

# The compiled lower bound (pyproject: ext-modules; ``ColourMatcher(confirmed_only=True)``):
# optional; without it every stored copy is slid, with the same confirmed answers.
_may_match: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], bool] | None
try:
    from desktop_app.engine import _colourbound

    _may_match = _colourbound.may_match
except ImportError:  # installed without a C compiler
    _may_match = None

TINY_SIDE = 96
MAX_RMSE = 14.0  # at most this far apart, the query as a part of an image is confirmed
MAX_RMSE_CONTAINS = 18.0  # the same for an image inside the query (wrong ones are further)
MIN_TEMPLATE = 6  # pixels: smaller templates match any flat patch
# A confirmed match is at most this fraction of the template's spread from it (see
# ``ColourMatch.confirmed``). Measured on 1,000 clothing crops through the server bench:
# the two wrong images ranked above a crop's parent matched at 1.15 and 1.66 of the
# spread, the parents at 0.86 and 0.43.
LAYOUT_RATIO = 1.0
_SCALES = np.geomspace(0.2, 1.0, 8)  # template side / image side, coarse steps of 1.26×
# then a step up from the best coarse scale, and a step down from the better of the two
_REFINE = (1.12, 1 / 1.12)
_MID = 128.0  # pixels are centred on this before the transforms (``_Surface``)
_KEEP_PREPARED = 64  # query templates kept transformed (``ColourMatcher._template``)
_KEPT_SIDE = 96  # their padded size at most: cv2.getOptimalDFTSize(TINY_SIDE)
# The lower bound splits a template into this many blocks per side (``_Bound``; at most
# MIN_TEMPLATE, so every template has them all). On the colour jobs of 6 searches at
# 10,000 images (405 stored copies, 7 confirmed), the share of copies it rules out and the
# check's CPU per search (sliding every copy: 240-250 ms): 3 blocks 82 %, 118 ms;
# 4 blocks 90 %, 100 ms; 5 blocks 95 %, 95 ms.
BOUND_BLOCKS = 5
# the bound is compared with the limit raised by this fraction: the slid sums are float32
# and the template's block sums are added in float32 too; measured, their rounding moves
# either by at most 5e-5 of the threshold
_BOUND_MARGIN = 1e-3
_MAGIC = b"TN1"
_HDR = struct.Struct("<3sII")  # magic, full width, full height


@dataclass
class Tiny:
    """A stored image's colour copy and the full size it stands for."""

    pixels: np.ndarray  # (h, w, 3) float32
    width: int
    height: int


@dataclass
class ColourMatch:
    rmse: float
    box: tuple[int, int, int, int]  # in the stored image's pixels
    coverage: float  # box area / stored image area
    contains: bool  # True: the query contains the stored image
    # the matched template's own spread: RMS distance of its pixels from its mean colour
    spread: float = float("inf")

    @property
    def limit(self) -> float:
        return MAX_RMSE_CONTAINS if self.contains else MAX_RMSE

    @property
    def confirmed(self) -> bool:
        """Close enough, and closer than the template's own mean colour is to it: a match
        that explains no more than the mean colour confirms no layout. (A textured crop
        shrunk to a few pixels is nearly flat, and its mean colour fits any patch of that
        colour: such matches ranked wrong images above a crop's parent.)"""
        return self.rmse <= self.limit and self.rmse < LAYOUT_RATIO * self.spread


def tiny_image(image: Image.Image, side: int = TINY_SIDE) -> Image.Image:
    """``image`` reduced to ``side`` on its long side (area average), RGB."""
    im = image.convert("RGB") if image.mode != "RGB" else image
    if max(im.size) <= side:
        return im.copy()
    return im.resize(fit_size(im.size, side), Image.Resampling.BOX, reducing_gap=None)


def tiny_to_bytes(image: Image.Image, width: int, height: int) -> bytes:
    """Serialise the colour copy of an image whose full size is ``width`` × ``height``."""
    buf = io.BytesIO()
    tiny_image(image).save(buf, "JPEG", quality=92)
    return _HDR.pack(_MAGIC, width, height) + buf.getvalue()


def tiny_from_bytes(blob: bytes) -> Tiny:
    """Inverse of :func:`tiny_to_bytes`; ``ValueError`` for anything else."""
    try:
        magic, width, height = _HDR.unpack_from(blob, 0)
    except struct.error as e:  # short
        raise ValueError(f"damaged colour blob: {e}") from e
    if magic != _MAGIC:
        raise ValueError("not a colour blob")
    if not blob.endswith(b"\xff\xd9"):  # no end-of-image marker: cut short (OpenCV
        raise ValueError("damaged colour blob: it is cut short")  # would fill it in grey)
    # OpenCV decodes the same pixels as Pillow (both libjpeg-turbo, the same IDCT and
    # upsampling; equal on every blob of the benchmark's searches) in a third of the
    # time: a search decodes about 50, on the colour check's one thread
    try:
        bgr = cv2.imdecode(
            np.frombuffer(blob, np.uint8, offset=_HDR.size),
            cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION,
        )
    except cv2.error as e:
        raise ValueError(f"damaged colour blob: {e}") from e
    if bgr is None:
        raise ValueError("damaged colour blob: its image cannot be decoded")
    return Tiny(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32), width, height)


def query_small(image: Image.Image) -> np.ndarray:
    """The query as the matcher uses it: twice ``TINY_SIDE``, so templates are cut from
    more detail than they end up with."""
    return np.asarray(tiny_image(image, 2 * TINY_SIDE), dtype=np.float32)


class _Resizer:
    """Resized copies of one array, kept per size (many candidates share sizes)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def get(self, w: int, h: int) -> np.ndarray:
        r = self.cache.get((w, h))
        if r is None:
            r = cv2.resize(self.a, (w, h), interpolation=cv2.INTER_AREA)
            self.cache[(w, h)] = r
        return r


def _spread(template: np.ndarray) -> float:
    """RMS distance of the template's pixels from its mean colour (0-255 levels)."""
    pixels = template.reshape(-1, 3)
    return float(np.sqrt(np.mean((pixels - pixels.mean(axis=0)) ** 2)))


class _Surface:
    """An image to slide templates over: the sum of squared differences at every place
    (OpenCV's ``TM_SQDIFF`` over the three channels) computed with its spectra, taken
    once and shared by all the templates slid over it. ``cv2.matchTemplate`` computes
    the same but transforms the image again for every template; a search slides ten
    templates over each of some 70 stored copies, and this is about twice as fast.

    The sum is ‖window‖² − 2·(window · template) + ‖template‖²: the correlation by FFT
    (the image padded to a size OpenCV transforms fast; with the template no larger than
    the image, no valid place wraps around), the window norms by a box filter. Pixels
    are centred on mid-grey first, which leaves the differences as they are and keeps
    float32 rounding far below a level of RMSE (``matchTemplate`` works in float32 too)."""

    def __init__(self, a: np.ndarray) -> None:
        self.h, self.w = a.shape[:2]
        self.shape = (cv2.getOptimalDFTSize(self.h), cv2.getOptimalDFTSize(self.w))
        centred = a - np.float32(_MID)
        self.spectra, _ = _centred_spectra(centred, self.shape)
        self.norms = np.einsum("hwc,hwc->hw", centred, centred)  # per pixel, float32

    def slide(self, template: np.ndarray) -> tuple[float, int, int]:
        """(rmse, x, y) of the template's best place in the image."""
        th, tw = template.shape[:2]
        return self.slide_prepared(_spectra(template, self.shape), tw, th)

    def slide_prepared(self, prepared: _Spectra, tw: int, th: int) -> tuple[float, int, int]:
        """``slide`` for a template of ``tw`` × ``th`` given as ``_spectra(template,
        self.shape)``, which the caller keeps for reuse."""
        spectra, norm = prepared
        corr = cv2.mulSpectrums(self.spectra[0], spectra[0], 0, conjB=True)
        for mine, theirs in zip(self.spectra[1:], spectra[1:], strict=True):
            corr = cv2.add(corr, cv2.mulSpectrums(mine, theirs, 0, conjB=True))
        cc = cv2.dft(corr, flags=cv2.DFT_INVERSE | cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        ny, nx = self.h - th + 1, self.w - tw + 1
        # window norms: sums over the template's extent, anchored at its top-left corner
        windows = cv2.boxFilter(self.norms, -1, (tw, th), anchor=(0, 0), normalize=False)
        sq = cv2.addWeighted(windows[:ny, :nx], 1.0, cc[:ny, :nx], -2.0, norm)
        lo, _, loc, _ = cv2.minMaxLoc(sq)
        return float(max(lo, 0.0) / (tw * th * 3)) ** 0.5, int(loc[0]), int(loc[1])


_Spectra = tuple[list[np.ndarray], float]  # per-channel spectra, sum of squares


def _fitted(a: np.ndarray, side: int) -> np.ndarray:
    """``a`` reduced (area average) to fit in ``side`` × ``side``; as it is if it fits."""
    h, w = a.shape[:2]
    if max(h, w) <= side:
        return a
    return cv2.resize(a, fit_size((w, h), side), interpolation=cv2.INTER_AREA)


def _spectra(a: np.ndarray, shape: tuple[int, int]) -> _Spectra:
    """The spectrum of each channel of ``a`` (centred on ``_MID``) zero-padded to
    ``shape``, and the centred pixels' sum of squares."""
    return _centred_spectra(a - np.float32(_MID), shape)


def _centred_spectra(centred: np.ndarray, shape: tuple[int, int]) -> _Spectra:
    """``_spectra`` of pixels already centred on ``_MID``."""
    h, w = centred.shape[:2]
    padded = cv2.copyMakeBorder(centred, 0, shape[0] - h, 0, shape[1] - w, cv2.BORDER_CONSTANT)
    return [cv2.dft(c) for c in cv2.split(padded)], cv2.norm(centred, cv2.NORM_L2SQR)


def _scales_tried() -> tuple[float, ...]:
    """Every template scale ``_best`` may try, bit for bit: each coarse scale, and each
    product of it with the refining steps taken in ``_best``'s order (every step either
    taken or not), as ``_best`` multiplies them."""
    tried: dict[float, None] = {}
    for f in _SCALES:
        reached = [float(f)]
        for r in _REFINE:
            reached += [g * r for g in reached]
        tried.update(dict.fromkeys(reached))
    return tuple(tried)


_SCALES_TRIED = _scales_tried()


@functools.cache
def _edges(n: int) -> np.ndarray:
    """Block edges 0 = e0 < e1 < ... < n splitting ``n`` pixels into ``BOUND_BLOCKS``
    (fewer when ``n`` is smaller) about equal blocks."""
    edges = np.unique(np.round(np.linspace(0, n, BOUND_BLOCKS + 1)).astype(np.intp))
    edges.flags.writeable = False  # shared by every caller
    return edges


_BlockSums = tuple[np.ndarray, np.ndarray, np.ndarray]  # (gy, gx, 3) sums, x and y edges


def _block_sums(template: np.ndarray) -> _BlockSums:
    """The template's pixel sums in about ``BOUND_BLOCKS`` × ``BOUND_BLOCKS`` blocks."""
    th, tw = template.shape[:2]
    xs, ys = _edges(tw), _edges(th)
    rows = np.add.reduceat(template, ys[:-1], axis=0)
    sums = np.add.reduceat(rows, xs[:-1], axis=1).astype(np.float64)
    return sums, xs, ys


def _shrunk_block_sums(image: np.ndarray, sizes: list[tuple[int, int]]) -> list[_BlockSums]:
    """``_block_sums`` of ``image`` resized to each of ``sizes`` as ``cv2.INTER_AREA``
    resizes it, without resizing: shrunk, a pixel is the mean of the source area it
    covers, so a block's sum is the source's integral over the block's area (at
    fractional edges: bilinear in the integral image) times the area ratio. Equal to the
    resized copies' sums within float32 rounding (``test_shrunk_block_sums_...``). A size
    that enlarges the image either way (INTER_AREA then interpolates) is resized."""
    h, w = image.shape[:2]
    out: dict[int, _BlockSums] = {}
    shrunk = []
    for k, (tw, th) in enumerate(sizes):
        xs, ys = _edges(tw), _edges(th)
        if tw <= w and th <= h and len(xs) == len(ys) == BOUND_BLOCKS + 1:
            shrunk.append(k)
        else:
            resized = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
            out[k] = _block_sums(resized)
    if shrunk:
        tws = np.array([sizes[k][0] for k in shrunk], np.float64)
        ths = np.array([sizes[k][1] for k in shrunk], np.float64)
        xs = np.stack([_edges(sizes[k][0]) for k in shrunk])  # (n, blocks + 1) each
        ys = np.stack([_edges(sizes[k][1]) for k in shrunk])
        px, py = xs * (w / tws)[:, None], ys * (h / ths)[:, None]  # in source pixels
        ix, iy = np.minimum(px.astype(np.intp), w - 1), np.minimum(py.astype(np.intp), h - 1)
        fx, fy = (px - ix)[:, None, :, None], (py - iy)[:, :, None, None]
        ix, iy = ix[:, None, :], iy[:, :, None]
        integral = cv2.integral(image, sdepth=cv2.CV_64F)
        top = (1 - fx) * integral[iy, ix] + fx * integral[iy, ix + 1]
        bottom = (1 - fx) * integral[iy + 1, ix] + fx * integral[iy + 1, ix + 1]
        at = (1 - fy) * top + fy * bottom  # the integral at every block corner
        sums = at[:, 1:, 1:] - at[:, :-1, 1:] - at[:, 1:, :-1] + at[:, :-1, :-1]
        sums *= ((tws * ths) / (w * h))[:, None, None, None]
        for n, k in enumerate(shrunk):
            out[k] = (sums[n], xs[n], ys[n])
    return [out[k] for k in range(len(sizes))]


class _Bound:
    """Whether a template can come within a limit anywhere in one image, answered from
    block means (``_colourbound.may_match``: never "no" where a place would match)."""

    def __init__(self, image: np.ndarray) -> None:
        self.integral = cv2.integral(image, sdepth=cv2.CV_64F)

    def may_match(self, template: _BlockSums, limit: float) -> bool:
        assert _may_match is not None
        sums, xs, ys = template
        threshold = limit * limit * (1.0 + _BOUND_MARGIN) * int(xs[-1]) * int(ys[-1]) * 3
        return _may_match(self.integral, sums, xs, ys, threshold)

    def rules_out(self, templates: Iterable[_BlockSums], limit: float) -> bool:
        """No place of any of ``templates`` in the image comes within ``limit``."""
        return not any(self.may_match(t, limit) for t in templates)


class ColourMatcher:
    """Matches one query against many stored colour copies. It belongs to the thread
    that made it (a search's colour-check thread, ``partial.colour_matches``) and lives
    for that one check: its kept spectra are read and written without a lock.

    With ``confirmed_only`` (the search's check, which keeps confirmed matches alone) a
    stored copy is first bounded (``_Bound``) at every size its templates would take,
    and where no place at any size can come within the limit it is not slid at all:
    ``None`` instead of an unconfirmed match. The confirmed answers are the same."""

    def __init__(self, query: np.ndarray, confirmed_only: bool = False) -> None:
        self.query = query
        self.qh, self.qw = query.shape[:2]
        qtiny = _fitted(query, TINY_SIDE)
        self._qtiny = _Surface(qtiny)
        # the query's copy for bounding (None: every stored copy is slid)
        bounded = confirmed_only and _may_match is not None
        self._qtiny_bound = _Bound(qtiny) if bounded else None
        self._block_sums: dict[tuple[int, int], _BlockSums] = {}  # query templates by size
        # the query's templates transformed at a stored copy's padded size: stored copies
        # share a few sizes (TINY_SIDE on the long side, common aspect ratios), so most
        # are reused. At most ``_KEEP_PREPARED`` (33-62 in a search), in one block of
        # 7 MB at most that is mapped on its own and unmapped with this matcher: kept in
        # the heap, a search's spectra stayed in the arena of its short-lived colour
        # thread until the next trim (engine/heap.py): the window ran 45-50 MB higher.
        self._kept: np.ndarray | None = None
        self._slots: dict[tuple[int, int, int, int], tuple[int, float]] = {}

    def _scaled(self, tw: int, th: int) -> np.ndarray:
        return cv2.resize(self.query, (tw, th), interpolation=cv2.INTER_AREA)

    def _template(self, shape: tuple[int, int], tw: int, th: int) -> _Spectra:
        """The query at ``tw`` × ``th``, transformed at the padded ``shape``."""
        ph, pw = shape
        if max(ph, pw) > _KEPT_SIDE:  # not a stored copy's size: nothing to share
            return _spectra(self._scaled(tw, th), shape)
        key = (ph, pw, tw, th)
        found = self._slots.get(key)
        if found is None:
            if len(self._slots) >= _KEEP_PREPARED:
                self._slots.clear()
            spectra, norm = _spectra(self._scaled(tw, th), shape)
            found = self._slots[key] = (len(self._slots), norm)
            self._slot(found[0], ph, pw)[:] = spectra
        slot, norm = found
        return list(self._slot(slot, ph, pw)), norm

    def _slot(self, slot: int, ph: int, pw: int) -> np.ndarray:
        """Slot ``slot`` of the block as three contiguous ``ph`` × ``pw`` spectra."""
        if self._kept is None:
            self._kept = np.empty((_KEEP_PREPARED, 3 * _KEPT_SIDE * _KEPT_SIDE), np.float32)
        return self._kept[slot, : 3 * ph * pw].reshape(3, ph, pw)

    def _inside_size(self, f: float, cw: int, ch: int) -> tuple[int, int] | None:
        """The query's size when its long side spans f of a cw × ch copy's matching side;
        None when that does not fit or is too small to match."""
        if self.qw >= self.qh:
            tw = round(f * cw)
            th = round(tw * self.qh / self.qw)
        else:
            th = round(f * ch)
            tw = round(th * self.qw / self.qh)
        if min(tw, th) < MIN_TEMPLATE or tw > cw or th > ch:
            return None
        return tw, th

    def _query_block_sums(self, tw: int, th: int) -> _BlockSums:
        found = self._block_sums.get((tw, th))
        if found is None:
            if len(self._block_sums) >= 4 * _KEEP_PREPARED:
                self._block_sums.clear()
            found = self._block_sums[tw, th] = _block_sums(self._scaled(tw, th))
        return found

    def match_inside(self, cand: Tiny) -> ColourMatch | None:
        """The query as a part of the stored image: slide it over the stored copy."""
        ch, cw = cand.pixels.shape[:2]
        if self._qtiny_bound is not None:
            sizes = dict.fromkeys(self._inside_size(f, cw, ch) for f in _SCALES_TRIED)
            templates = (self._query_block_sums(*size) for size in sizes if size is not None)
            if _Bound(cand.pixels).rules_out(templates, MAX_RMSE):
                return None
        c = _Surface(cand.pixels)

        def at(f: float) -> tuple[float, int, int, int, int, float] | None:
            size = self._inside_size(f, cw, ch)
            if size is None:
                return None
            tw, th = size
            return (*c.slide_prepared(self._template(c.shape, tw, th), tw, th), tw, th, f)

        best = _best(at)
        if best is None:
            return None
        rmse, x, y, tw, th, _ = best
        sx, sy = cand.width / cw, cand.height / ch
        box = (round(x * sx), round(y * sy), round(tw * sx), round(th * sy))
        spread = _spread(self._scaled(tw, th))
        return ColourMatch(rmse, box, tw * th / (cw * ch), False, spread)

    def match_contains(self, cand: Tiny) -> ColourMatch | None:
        """The stored image inside the query: slide a reduced copy of it over the query."""
        q = self._qtiny
        qh, qw = q.h, q.w
        c = _Resizer(cand.pixels)
        ch, cw = cand.pixels.shape[:2]

        def size_at(f: float) -> tuple[int, int] | None:
            s = f * min(qw / cw, qh / ch)  # f of the largest size that fits in the query
            tw, th = round(cw * s), round(ch * s)
            if min(tw, th) < MIN_TEMPLATE or tw > qw or th > qh:
                return None
            return tw, th

        if self._qtiny_bound is not None:
            sizes = [size for size in dict.fromkeys(map(size_at, _SCALES_TRIED)) if size]
            templates = _shrunk_block_sums(cand.pixels, sizes)
            if self._qtiny_bound.rules_out(templates, MAX_RMSE_CONTAINS):
                return None

        def at(f: float) -> tuple[float, int, int, int, int, float] | None:
            size = size_at(f)
            if size is None:
                return None
            tw, th = size
            return (*q.slide(c.get(tw, th)), tw, th, f)

        best = _best(at)
        if best is None:
            return None
        rmse, _x, _y, tw, th, _f = best
        return ColourMatch(rmse, (0, 0, cand.width, cand.height), 1.0, True, _spread(c.get(tw, th)))


_Trial = tuple[float, int, int, int, int, float]  # rmse, x, y, template w, h, scale


def _best(at: Callable[[float], _Trial | None]) -> _Trial | None:
    """The best trial over the coarse scales, then refined by ``_REFINE``'s steps."""
    tried = [float(f) for f in _SCALES]
    trials = [t for t in map(at, tried) if t is not None]
    if not trials:
        return None
    best = min(trials)
    for r in _REFINE:
        f = best[5] * r
        if f in tried:  # back where a trial lost already (a step up won): not again
            continue
        tried.append(f)
        t = at(f)
        if t is not None and t[0] < best[0]:
            best = t
    return best
