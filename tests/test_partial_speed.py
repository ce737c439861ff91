"""The partial stage's speed-ups change no answer: keypoint verification on a thread
pool gives the results one thread gives, and the query's keypoints (computed beside the
window embedding) are there, and their failures reach the caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from desktop_app.engine import partial, queries
from desktop_app.engine.library import Library
from desktop_app.engine.search import SearchResult

from .conftest import FIXTURES, PHOTOS, run_index

LARGE = sorted((FIXTURES / "large").glob("*.jpg"))  # 400×533 photos with detail


@pytest.fixture
def indexed_library(lib: Library, photos: Path) -> Library:
    """The small photos and the larger detailed ones, which have keypoints to verify."""
    for p in LARGE:
        Image.open(p).save(photos / p.name)
    run_index(lib, [photos])
    return lib


def scene(source: Path, dest: Path) -> Path:
    """A stored photo pasted into a larger plain canvas (a photo of a screen)."""
    canvas = Image.new("RGB", (1200, 900), (90, 110, 130))
    inset = Image.open(source).convert("RGB").resize((360, 480))
    canvas.paste(inset, (500, 300))
    canvas.save(dest, quality=92)
    return dest


def answer(results: list[SearchResult]) -> list[tuple[Any, ...]]:
    return [(r.path, round(r.score, 6), r.match, r.region) for r in results]


@pytest.mark.parametrize("query", ["crop", "scene"])
def test_pooled_verification_gives_the_single_thread_answer(
    indexed_library: Library,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    if query == "crop":
        expected = photos / LARGE[4].name
        source = Image.open(expected).convert("RGB")
        w, h = source.size
        path = tmp_path / "crop.jpg"
        source.crop((w // 4, h // 4, w * 3 // 4, h * 3 // 4)).save(path, quality=92)
    else:
        expected = photos / LARGE[2].name
        path = scene(expected, tmp_path / "scene.jpg")
    verified: list[str] = []
    real = partial.verify

    def counting(*args: Any, **kwargs: Any) -> Any:
        verified.append("x")
        return real(*args, **kwargs)

    monkeypatch.setattr(partial, "verify", counting)
    pooled = indexed_library.search_image(path, top_k=20)
    monkeypatch.setattr(partial, "VERIFY_THREADS", 1)
    single = indexed_library.search_image(path, top_k=20)
    assert len(verified) > 2 * partial.VERIFY_THREADS  # the pool had work to share
    assert answer(pooled) == answer(single)
    assert pooled[0].path == str(expected)
    assert pooled[0].match == "partial" and pooled[0].region is not None


def test_partial_features_are_computed_and_their_failure_reaches_the_caller(
    indexed_library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = queries.image_query(indexed_library.encoder, photos / PHOTOS[1].name)
    assert q.load_partial is not None and q.keypoints is None
    q.load_partial()
    assert q.keypoints is not None and len(q.keypoints) > 0
    assert q.keypoints_flipped is not None and q.small is not None
    assert q.windows is not None and len(q.windows) >= 9

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("keypoint detector failed")

    monkeypatch.setattr(queries, "extract_keypoints", broken)
    full, merged = indexed_library.image_stages(photos / PHOTOS[1].name, top_k=5)
    assert full()[0].path == str(photos / PHOTOS[1].name)
    with pytest.raises(RuntimeError, match="keypoint detector failed"):
        merged()


def _compiler() -> str | None:
    import shutil
    import sys
    import sysconfig

    if sys.platform == "win32":
        return shutil.which("cl")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc")


@pytest.mark.parametrize(
    ("module", "without"),
    [
        ("_hamming", "keypoint verification falls back to numpy, 3x slower (or no POPCNT)"),
        ("_colourbound", "the colour check slides every stored copy, about twice the time"),
    ],
)
def test_the_compiled_modules_are_built(module: str, without: str) -> None:
    from desktop_app.engine import colour, regions

    if _compiler() is None:
        pytest.skip("no C compiler here: the install runs without them (README)")
    built = {"_hamming": regions._compiled_two_nearest, "_colourbound": colour._may_match}
    assert built[module] is not None, (
        f"desktop_app.engine.{module} was not built although there is a C compiler: {without}"
    )


def test_the_compiled_two_nearest_refuses_wrong_buffers() -> None:
    import numpy as np

    from desktop_app.engine import regions

    two_nearest = regions._compiled_two_nearest
    if two_nearest is None:
        pytest.skip("not built: test_the_compiled_modules_are_built says why")
    q, c = np.zeros((3, 32), np.uint8), np.zeros((4, 32), np.uint8)
    d0, d1, nn = np.empty(3, np.float32), np.empty(3, np.float32), np.empty(3, np.intp)
    with pytest.raises(ValueError, match="whole 32-byte descriptors"):
        two_nearest(q[:, :31].copy(), c, d0, d1, nn)
    with pytest.raises(ValueError, match="one value per query descriptor"):
        two_nearest(q, c, d0[:2].copy(), d1, nn)
    with pytest.raises(ValueError, match="at least 2 candidate"):
        two_nearest(q, c[:1], d0, d1, nn)
    with pytest.raises(ValueError, match="not C-contiguous"):  # a strided view
        two_nearest(q, np.zeros((4, 64), np.uint8)[:, ::2], d0, d1, nn)
    for wrong in (np.int32, np.uint64, np.float64):  # unsigned: an index is intp
        with pytest.raises(TypeError, match="nearest: items of format"):
            two_nearest(q, c, d0, d1, np.empty(3, wrong))
    with pytest.raises(TypeError, match="query: items of format 'b'"):
        two_nearest(q.view(np.int8), c, d0, d1, nn)
    with pytest.raises(ValueError, match="d1: not aligned"):
        two_nearest(q, c, d0, np.empty(13, np.uint8)[1:].view(np.float32), nn)
    with pytest.raises((BufferError, ValueError, TypeError)):  # read-only output
        d0.flags.writeable = False
        two_nearest(q, c, d0, d1, nn)
    # all 256 bits apart: the largest distance, kept as it is
    d0 = np.empty(3, np.float32)
    two_nearest(q, np.full((2, 32), 255, np.uint8), d0, d1, nn)
    assert d0.tolist() == d1.tolist() == [256.0] * 3 and nn.tolist() == [0, 0, 0]


@pytest.mark.parametrize("path", ["compiled", "numpy"])
def test_two_nearest_matches_opencvs_search_on_real_descriptors(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    import cv2
    import numpy as np

    from desktop_app.engine import regions

    if path == "numpy":
        monkeypatch.setattr(regions, "_compiled_two_nearest", None)
    elif regions._compiled_two_nearest is None:
        pytest.skip("not built: test_the_compiled_modules_are_built says why")

    q = regions.extract_keypoints(Image.open(LARGE[0]), regions.QUERY_KEYPOINTS).desc
    c = regions.extract_keypoints(Image.open(LARGE[1])).desc
    # exact complements (distance 256: in uint8 it would wrap to a false 0, the nearest)
    # and duplicates (ties) included
    c = np.concatenate([c, ~q[:3], c[:5]])
    dist, nid = cv2.batchDistance(q, c, -1, normType=cv2.NORM_HAMMING, K=2)
    d0, d1, nearest = regions._two_nearest(q, c)
    assert np.array_equal(d0, dist[:, 0]) and np.array_equal(d1, dist[:, 1])
    assert np.array_equal(nearest, nid[:, 0])
    # a fresh thread's work arrays: sized for a small candidate first, then grown for the
    # larger one (508 descriptors), then reused for the small one again
    import threading

    small = c[:40]
    sd, sn = cv2.batchDistance(q, small, -1, normType=cv2.NORM_HAMMING, K=2)
    got: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    worker = threading.Thread(
        target=lambda: got.extend(regions._two_nearest(q, x) for x in (small, c, small))
    )
    worker.start()
    worker.join()
    for (g0, g1, gn), (w0, w1, wn) in zip(
        got,
        [(sd[:, 0], sd[:, 1], sn[:, 0]), (dist[:, 0], dist[:, 1], nid[:, 0])] * 2,
        strict=False,
    ):
        assert np.array_equal(g0, w0) and np.array_equal(g1, w1) and np.array_equal(gn, wn)
    assert not np.shares_memory(got[0][0], got[2][0])  # answers are not the work arrays
    # a query that is a strided view (the compiled path copies it) and a block of rows
    # that is not a whole block of the compiled kernel's 8
    s0, s1, sn = regions._two_nearest(np.concatenate([q, q], axis=1)[:13, :32], c)
    assert np.array_equal(s0, d0[:13]) and np.array_equal(s1, d1[:13])
    assert np.array_equal(sn, nearest[:13])
    monkeypatch.setattr(regions, "_compiled_two_nearest", None)
    monkeypatch.delattr(np, "bitwise_count")  # numpy < 2: OpenCV's own search
    f0, f1, fn = regions._two_nearest(q, c)
    assert np.array_equal(f0, d0) and np.array_equal(f1, d1) and np.array_equal(fn, nearest)


def _bound_reference(image: Any, template: Any, xs: Any, ys: Any) -> float:
    """The block-mean bound's lowest value over all places, computed plainly."""
    import numpy as np

    h, w = image.shape[:2]
    th, tw = template.shape[:2]
    best = np.inf
    for y in range(h - th + 1):
        for x in range(w - tw + 1):
            total = 0.0
            for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
                for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
                    mine = image[y + y0 : y + y1, x + x0 : x + x1].reshape(-1, 3).astype(float)
                    theirs = template[y0:y1, x0:x1].reshape(-1, 3).astype(float)
                    total += len(mine) * float(((mine.mean(0) - theirs.mean(0)) ** 2).sum())
            best = min(best, total)
    return float(best)


def test_the_colour_bound_is_a_lower_bound_and_answers_exactly() -> None:
    """For 60 random smooth images up to 23 pixels a side and templates cut from them
    (with noise), from 1 pixel to the whole image, in 1-5 blocks a side: the bound's
    lowest value is at most the lowest sum of squared differences (``cv2.matchTemplate``),
    and the compiled scan answers "may match" exactly when that lowest value is within
    the threshold."""
    import cv2
    import numpy as np

    from desktop_app.engine import colour

    may_match = colour._may_match
    if may_match is None:
        pytest.skip("not built: test_the_compiled_modules_are_built says why")
    rng = np.random.default_rng(5)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(4, 24, 2))
        th, tw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        image = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (5, 5), 2)
        y, x = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
        noise = rng.normal(0, 8, (th, tw, 3)).astype(np.float32)
        template = image[y : y + th, x : x + tw] + noise
        blocks = int(rng.integers(1, 6))
        xs = np.unique(np.round(np.linspace(0, tw, blocks + 1)).astype(np.intp))
        ys = np.unique(np.round(np.linspace(0, th, blocks + 1)).astype(np.intp))
        lowest = _bound_reference(image, template, xs, ys)
        ssd = cv2.minMaxLoc(cv2.matchTemplate(image, template, cv2.TM_SQDIFF))[0]
        assert lowest <= ssd * (1 + 1e-4) + 1e-3
        integral = cv2.integral(image, sdepth=cv2.CV_64F)
        sums = np.add.reduceat(np.add.reduceat(template, ys[:-1], 0), xs[:-1], 1)
        sums = sums.astype(np.float64)
        assert may_match(integral, sums, xs, ys, lowest * 1.0001 + 1e-9)
        assert not may_match(integral, sums, xs, ys, lowest * 0.9999 - 1e-9)


def test_the_colour_bound_refuses_wrong_buffers() -> None:
    import numpy as np

    from desktop_app.engine import colour

    may_match = colour._may_match
    if may_match is None:
        pytest.skip("not built: test_the_compiled_modules_are_built says why")
    integral = np.zeros((9, 11, 3))
    sums, xs, ys = np.zeros((2, 2, 3)), np.array([0, 2, 4], np.intp), np.array([0, 1, 3], np.intp)
    assert may_match(integral, sums, xs, ys, 0.0)  # all zero: a perfect fit
    with pytest.raises(TypeError, match="integral: items of format"):
        may_match(integral.astype(np.float32), sums, xs, ys, 1.0)
    with pytest.raises(ValueError, match="integral: 2 dimensions"):
        may_match(np.zeros((9, 33)), sums, xs, ys, 1.0)
    with pytest.raises(ValueError, match="not C-contiguous"):
        may_match(np.zeros((9, 22, 3))[:, ::2], sums, xs, ys, 1.0)
    with pytest.raises(ValueError, match="sums: 2 x 1 blocks, not 2 x 2"):
        may_match(integral, sums[:, :1].copy(), xs, ys, 1.0)
    with pytest.raises(TypeError, match="xs: items of format"):
        may_match(integral, sums, xs.astype(np.int16), ys, 1.0)
    with pytest.raises(ValueError, match="xs: must increase"):
        may_match(integral, sums, np.array([0, 2, 2], np.intp), ys, 1.0)
    with pytest.raises(ValueError, match="ys: must start at 0 and end inside"):
        may_match(integral, sums, xs, np.array([0, 4, 9], np.intp), 1.0)  # 8 rows
    with pytest.raises(ValueError, match="from 1 to 16 blocks"):
        may_match(integral, sums[:0, :0].copy(), xs[:1].copy(), ys[:1].copy(), 1.0)
    with pytest.raises(ValueError, match="from 1 to 16 blocks"):
        edges = np.arange(18, dtype=np.intp)
        may_match(np.zeros((20, 20, 3)), np.zeros((17, 17, 3)), edges, edges, 1.0)


def _colour_cases(n: int, crop: tuple[int, int, int]) -> tuple[list[Any], list[Image.Image]]:
    """The real photos' colour copies, and queries from the first ``n`` photos: a crop
    (``crop`` = (a, b, c): from 1/a of the width and 1/b of the height, 1/c of each side)
    and the photo pasted into a plain canvas twice its size."""
    from desktop_app.engine import colour

    photos = [Image.open(p).convert("RGB") for p in [*LARGE, *PHOTOS[:6]]]
    stored = [colour.tiny_from_bytes(colour.tiny_to_bytes(im, *im.size)) for im in photos]
    queries_: list[Image.Image] = []
    a, b, c = crop
    for im in photos[:n]:
        w, h = im.size
        queries_.append(im.crop((w // a, h // b, w // a + w // c, h // b + h // c)))
        canvas = Image.new("RGB", (2 * w, 2 * h), (200, 190, 170))
        canvas.paste(im, (w // 3, h // 2))
        queries_.append(canvas)
    return stored, queries_


def test_the_bounded_colour_check_confirms_what_sliding_all_confirms() -> None:
    """``confirmed_only`` skips stored copies that cannot match, and confirms exactly
    what sliding every copy confirms, both ways (the query inside a copy, a copy inside
    the query): the real photos and crops of them, parents and wrong images."""

    from desktop_app.engine import colour

    if colour._may_match is None:
        pytest.skip("not built: test_the_compiled_modules_are_built says why")
    stored, queries_ = _colour_cases(4, (4, 5, 2))
    skipped = confirmed = 0
    for query in queries_:
        small = colour.query_small(query)
        plain, bounded = colour.ColourMatcher(small), colour.ColourMatcher(small, True)
        for tiny in stored:
            for way in ("match_inside", "match_contains"):
                want = getattr(plain, way)(tiny)
                got = getattr(bounded, way)(tiny)
                if want is not None and want.confirmed:
                    confirmed += 1
                    assert got == want
                else:
                    assert got is None or (got == want and not got.confirmed)
                    skipped += got is None and want is not None
    assert confirmed >= 8 and skipped >= 20, (confirmed, skipped)


def test_shrunk_block_sums_are_those_of_the_resized_copies() -> None:
    """The contained check's block sums, computed from the stored copy's integral image,
    are the sums of ``cv2.resize(INTER_AREA)``'s copies within float32 rounding, for
    every size the check takes from a range of copy shapes, and sizes that enlarge the
    copy one way (resized instead) are exact."""
    import cv2
    import numpy as np

    from desktop_app.engine import colour

    rng = np.random.default_rng(9)
    for h, w in [(72, 96), (96, 54), (61, 96), (96, 96), (20, 31), (7, 96)]:
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
        image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        image += rng.uniform(0, 40, (h, w, 3)).astype(np.float32)
        sizes = [(max(6, round(w * f)), max(6, round(h * f))) for f in colour._SCALES_TRIED]
        sizes += [(w + 5, max(6, h // 2)), (max(6, w // 2), h + 3), (w, h)]
        for (tw, th), (sums, xs, ys) in zip(
            sizes, colour._shrunk_block_sums(image, sizes), strict=True
        ):
            resized = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
            want, want_xs, want_ys = colour._block_sums(resized)
            assert np.array_equal(xs, want_xs) and np.array_equal(ys, want_ys)
            assert np.allclose(sums, want, rtol=1e-5, atol=1e-2), (h, w, tw, th)


def test_the_bounded_colour_check_keeps_a_match_at_its_limit_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound rules a stored copy out only where no place at any size the check slides
    comes within the limit: with the limit set to each plain match's own RMSE (the
    tightest limit that still confirms it), the bounded check returns that very match,
    both ways, for crops and scenes of real photos against every stored copy. (A bound
    that left out a size the check slides, or compared with a threshold below the
    limit's, drops some.)"""
    from desktop_app.engine import colour

    if colour._may_match is None:
        pytest.skip("not built: test_the_compiled_modules_are_built says why")
    stored, queries_ = _colour_cases(3, (3, 3, 3))
    checked = 0
    for query in queries_:
        small = colour.query_small(query)
        plain = colour.ColourMatcher(small)
        for tiny in stored:
            for way, limit in (
                ("match_inside", "MAX_RMSE"),
                ("match_contains", "MAX_RMSE_CONTAINS"),
            ):
                want = getattr(plain, way)(tiny)
                if want is None:
                    continue
                monkeypatch.setattr(colour, limit, want.rmse)
                assert getattr(colour.ColourMatcher(small, True), way)(tiny) == want
                monkeypatch.undo()
                checked += 1
    assert checked >= 100
