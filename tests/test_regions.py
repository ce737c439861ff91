"""Partial-region matching: a crop finds the photo it came from, with the region; a
region of a query searches by that region alone; a query that contains a stored photo
finds it."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.cli import main
from desktop_app.engine.colour import (
    ColourMatcher,
    Tiny,
    query_small,
    tiny_from_bytes,
    tiny_to_bytes,
)
from desktop_app.engine.library import Library
from desktop_app.engine.paths import AppDirs
from desktop_app.engine.regions import QUERY_KEYPOINTS, extract_keypoints, find_frames, iou
from desktop_app.engine.settings import Settings

from .conftest import ENCODERS, FAST_MODEL, FIXTURES, PHOTOS, run_index

LARGE = sorted((FIXTURES / "large").glob("*.jpg"))
TILE = (400, 533)


def mosaic(paths: list[Path], dest: Path) -> Path:
    """Four real photos tiled 2×2: an 800×1066 photo with plenty of detail."""
    canvas = Image.new("RGB", (TILE[0] * 2, TILE[1] * 2))
    for i, p in enumerate(paths):
        im = Image.open(p).convert("RGB").resize(TILE)
        canvas.paste(im, ((i % 2) * TILE[0], (i // 2) * TILE[1]))
    canvas.save(dest, quality=92)
    return dest


def gradient(dest: Path, channels: tuple[int, int, int]) -> Path:
    """A smooth 1600×1000 colour field without a single corner (a sky, a studio backdrop,
    a gradient wallpaper): red along x, green along y, blue from the centre outwards,
    in the given channel order. Every crop of it has its own colour layout."""
    y, x = np.mgrid[0:1000, 0:1600].astype(np.float32)
    planes = [
        40 + 180 * x / 1600,
        30 + 200 * y / 1000,
        220 - 160 * np.hypot(x - 800, y - 500) / 943,
    ]
    rgb = np.stack([planes[c] for c in channels], axis=-1)
    Image.fromarray(rgb.round().astype(np.uint8)).save(dest, quality=92)
    return dest


@pytest.fixture(scope="module", params=ENCODERS)
def region_library(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Library, list[Path]]]:
    """Indexed once for the module: three mosaics, twenty distractors and two smooth
    gradients (the same layout in other colours)."""
    root = tmp_path_factory.mktemp("regions")
    folder = root / "library"
    folder.mkdir()
    mosaics = [
        mosaic(LARGE[0:4], folder / "mosaic-a.jpg"),
        mosaic(LARGE[4:8], folder / "mosaic-b.jpg"),
        # shares photos with A and B, but no two neighbours in the same arrangement
        mosaic([LARGE[3], LARGE[4], LARGE[6], LARGE[1]], folder / "mosaic-c.jpg"),
    ]
    for p in PHOTOS[:20]:  # distractors
        Image.open(p).save(folder / p.name)
    mosaics.append(gradient(folder / "gradient-a.jpg", (0, 1, 2)))
    gradient(folder / "gradient-b.jpg", (1, 0, 2))
    dirs = AppDirs(root / "data", root / "config", root / "cache", root / "logs")
    lib = Library(dirs, Settings(model=request.param, regions_enabled=True))
    run_index(lib, [folder])
    yield lib, mosaics
    lib.close()


def crop_query(source: Path, frac: float, dest: Path, seed: int) -> tuple[int, int, int, int]:
    """A random crop of ``frac`` of the area, downscaled by half, JPEG q=85."""
    im = Image.open(source).convert("RGB")
    rng = random.Random(seed)
    w, h = int(im.width * frac**0.5), int(im.height * frac**0.5)
    x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
    im.crop((x, y, x + w, y + h)).resize((w // 2, h // 2)).save(dest, quality=85)
    return x, y, w, h


@pytest.mark.parametrize("frac, seed", [(0.25, 1), (0.25, 2), (0.5, 3)])
def test_crop_finds_its_parent_with_the_region(
    region_library, tmp_path: Path, frac: float, seed: int
) -> None:  # type: ignore[no-untyped-def]
    lib, mosaics = region_library
    parent = mosaics[seed % 3]
    true_box = crop_query(parent, frac, tmp_path / "crop.jpg", seed)
    results = lib.search_image(tmp_path / "crop.jpg", top_k=5)
    top = results[0]
    assert top.path == str(parent)
    assert top.match == "partial"
    assert top.region is not None and iou(top.region, true_box) >= 0.5


def test_full_results_come_first_then_partial_matches(region_library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lib, mosaics = region_library
    crop_query(mosaics[1], 0.25, tmp_path / "crop.jpg", 7)
    full_stage, merged_stage = lib.image_stages(tmp_path / "crop.jpg", top_k=5)
    first = full_stage()
    assert all(r.match == "full" for r in first)
    merged = merged_stage()
    assert merged[0].path == str(mosaics[1]) and merged[0].match == "partial"


def test_search_by_a_region_of_the_query(region_library) -> None:  # type: ignore[no-untyped-def]
    """The rubber band: the top-left tile of mosaic A, searched alone, is found inside
    mosaic A with its box."""
    lib, mosaics = region_library
    region = (0, 0, TILE[0], TILE[1])
    results = lib.search_image(mosaics[0], top_k=5, region=region)
    by_path = {r.path: r for r in results}
    a = by_path[str(mosaics[0])]
    assert a.match == "partial" and iou(a.region, region) >= 0.5
    assert results[0].path == str(mosaics[0])


def test_query_containing_a_stored_photo_finds_it(region_library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A stored photo pasted at about half size into another scene."""
    lib, mosaics = region_library
    if lib.encoder_id == FAST_MODEL:
        # mosaic B shares two of the pasted mosaic's four tiles: both verify, and only a
        # real model's similarity ranks the whole picture above the half
        pytest.skip("needs a real model's similarity to rank between verified candidates")
    scene = Image.open(PHOTOS[30]).convert("RGB").resize((1200, 900))
    pasted = Image.open(mosaics[2]).convert("RGB").resize((450, 600))
    scene.paste(pasted, (600, 200))
    scene.save(tmp_path / "scene.jpg", quality=90)
    results = lib.search_image(tmp_path / "scene.jpg", top_k=5)
    assert results[0].path == str(mosaics[2])


def test_crop_without_texture_is_found_by_its_colour_layout(region_library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A 10 % crop of a smooth gradient has no keypoints to verify; the colour-layout
    check still finds the image it came from, and where, ahead of the same layout in
    other colours."""
    lib, mosaics = region_library
    parent = mosaics[3]
    true_box = crop_query(parent, 0.10, tmp_path / "flat.jpg", 4)
    query = Image.open(tmp_path / "flat.jpg")
    assert len(extract_keypoints(query, QUERY_KEYPOINTS)) < 6  # nothing for keypoints
    results = lib.search_image(tmp_path / "flat.jpg", top_k=5)
    top = results[0]
    assert top.path == str(parent)
    assert top.match == "partial"
    assert top.region is not None and iou(top.region, true_box) >= 0.5


def test_frames_outline_a_pasted_photo() -> None:
    """``find_frames`` finds the straight-edged rectangle of a photo inside a photo; its
    window is what nominates the stored photo for a scene query."""
    scene = Image.open(PHOTOS[31]).convert("RGB").resize((1024, 768))
    box = (520, 90, 380, 507)
    scene.paste(Image.open(LARGE[2]).convert("RGB").resize(box[2:]), box[:2])
    frames = find_frames(scene)
    assert 0 < len(frames) <= 6
    best = max(iou((x * 1024, y * 768, w * 1024, h * 768), box) for x, y, w, h in frames)
    assert best >= 0.7


def test_cli_region_and_status_counts(region_library, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    lib, mosaics = region_library
    data_dir = str(lib.dirs.data)
    lib.close()  # the CLI opens the data dir itself
    try:
        assert (
            main(
                [
                    "search",
                    str(mosaics[1]),
                    "--region",
                    "400,533,400,533",
                    "--top-k",
                    "3",
                    "--json",
                    "--data-dir",
                    data_dir,
                ]
            )
            == 0
        )
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        top = line["results"][0]
        assert top["path"] == str(mosaics[1]) and top["match"] == "partial"
        assert iou(top["region"], (400, 533, 400, 533)) >= 0.5
        assert main(["status", "--json", "--data-dir", data_dir]) == 0
        status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert status["vectors"] == {"full": 25, "region": 25 * 9}
    finally:
        lib.__init__(lib.dirs, lib.settings)  # reopen for the fixture's close()


def test_no_regions_stores_full_vectors_only(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(photos), "--model", FAST_MODEL, "--no-regions", "--json"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status["vectors"] == {"full": 40}


def test_colour_copy_round_trip_and_matches(tmp_path: Path) -> None:
    """The stored colour copy survives serialisation; a crop of it matches inside with
    the right box, the image pasted into a scene matches as contained, a differently
    coloured field does not match, and a damaged blob is a clear error."""
    parent = Image.open(gradient(tmp_path / "g.jpg", (0, 1, 2)))
    other = Image.open(gradient(tmp_path / "h.jpg", (2, 0, 1)))
    tiny = tiny_from_bytes(tiny_to_bytes(parent, 1600, 1000))
    assert (tiny.width, tiny.height) == (1600, 1000) and max(tiny.pixels.shape[:2]) == 96
    box = (900, 500, 480, 300)
    crop = parent.crop((box[0], box[1], box[0] + box[2], box[1] + box[3])).resize((240, 150))
    inside = ColourMatcher(query_small(crop)).match_inside(tiny)
    assert inside is not None and inside.confirmed and iou(inside.box, box) >= 0.7
    scene = Image.open(PHOTOS[5]).convert("RGB").resize((1024, 768))
    scene.paste(parent.resize((480, 300)), (300, 200))
    contained = ColourMatcher(query_small(scene)).match_contains(tiny)
    assert contained is not None and contained.confirmed and contained.contains
    wrong = ColourMatcher(query_small(crop)).match_inside(
        tiny_from_bytes(tiny_to_bytes(other, 1600, 1000))
    )
    assert wrong is None or not wrong.confirmed
    with pytest.raises(ValueError):
        tiny_from_bytes(b"TN1\x00")
    blob = tiny_to_bytes(parent, 1600, 1000)
    assert np.array_equal(  # the pixels Pillow decodes
        tiny_from_bytes(blob).pixels,
        np.asarray(
            Image.open(io.BytesIO(blob[blob.index(b"\xff\xd8") :])).convert("RGB"), np.float32
        ),
    )
    jpeg = blob.index(b"\xff\xd8")
    for damaged in (blob[: len(blob) // 2], blob[:-2], blob[:jpeg] + b"\x00" * 200 + b"\xff\xd9"):
        with pytest.raises(ValueError, match="damaged colour blob"):
            tiny_from_bytes(damaged)


def test_colour_match_of_a_mean_colour_alone_confirms_nothing(tmp_path: Path) -> None:
    """A finely textured crop, shrunk to the few pixels of a small template, is nearly
    its mean colour, which fits any patch of that colour: a stored flat field a shade
    off is close (within the limit) but no closer than the mean colour itself, so it is
    not confirmed; the crop's own parent is."""
    rng = np.random.default_rng(7)
    texture = rng.normal(0, 40, (1000, 1600, 1)) + np.array([150.0, 120.0, 90.0])
    layout = np.asarray(Image.open(gradient(tmp_path / "g.jpg", (0, 1, 2))), np.float32)
    pixels = 0.7 * np.clip(texture, 0, 255) + 0.3 * layout  # fine grain over a layout
    parent = Image.fromarray(pixels.astype(np.uint8))
    crop = parent.crop((400, 300, 880, 600)).resize((240, 150))
    matcher = ColourMatcher(query_small(crop))
    mean = np.asarray(crop, np.float32).reshape(-1, 3).mean(axis=0)
    flat = Image.new("RGB", (1600, 1000), tuple(int(c) + 6 for c in mean))
    near = matcher.match_inside(tiny_from_bytes(tiny_to_bytes(flat, 1600, 1000)))
    assert near is not None and near.rmse <= near.limit and not near.confirmed
    own = matcher.match_inside(tiny_from_bytes(tiny_to_bytes(parent, 1600, 1000)))
    assert own is not None and own.confirmed and iou(own.box, (400, 300, 480, 300)) >= 0.5


def test_sliding_by_spectra_finds_what_match_template_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The colour check's FFT sliding gives OpenCV's TM_SQDIFF answer: the same best
    place and RMSE, for image sizes padded to even or odd lengths (or not at all),
    templates from the smallest to the whole image, with the template's spectra taken
    fresh or reused; and whole matches through ``ColourMatcher`` (its kept templates
    cleared when full) are those of ``cv2.matchTemplate``. (Among places that fit
    exactly as well, as on a flat field, either may be the answer.)"""
    import cv2

    from desktop_app.engine import colour

    rng = np.random.default_rng(3)
    sizes = [(72, 96, 6, 6), (61, 96, 34, 61), (96, 71, 96, 71), (67, 53, 20, 9), (75, 81, 40, 7)]
    for h, w, th, tw in sizes:
        image = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
        template = rng.uniform(0, 255, (th, tw, 3)).astype(np.float32)
        surface = colour._Surface(image)
        ref = cv2.matchTemplate(image, template, cv2.TM_SQDIFF)
        lo, _, (x, y), _ = cv2.minMaxLoc(ref)
        want = (lo / template.size) ** 0.5
        for rmse, gx, gy in (
            surface.slide(template),
            surface.slide_prepared(colour._spectra(template, surface.shape), tw, th),
        ):
            assert (gx, gy) == (x, y) and abs(rmse - want) < 0.01
        # a piece of the image itself: found where it was cut, at (nearly) zero
        piece = image[y : y + th, x : x + tw]
        rmse, gx, gy = surface.slide(piece)
        assert (gx, gy) == (x, y) and rmse < 0.2

    # whole matches, both ways, against matchTemplate's: stored copies of several
    # sizes (some sharing a padded size), 12 kept templates: reused, and cleared when full
    def smooth(h: int, w: int) -> np.ndarray:
        small = rng.uniform(0, 255, (max(2, h // 8), max(2, w // 8), 3)).astype(np.float32)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    query = smooth(144, 192)
    stored = [
        Tiny(smooth(h, w), w * 10, h * 10)
        for h, w in [(72, 96), (71, 96), (96, 75), (96, 96), (54, 96)]
    ]
    # the query's own layout, whole (the query inside it) and a part (inside the query)
    stored.append(Tiny(cv2.resize(query, (96, 72), interpolation=cv2.INTER_AREA), 960, 720))
    stored.append(Tiny(cv2.resize(query[36:108, 48:144], (96, 72)), 960, 720))  # half of it
    monkeypatch.setattr(colour, "_KEEP_PREPARED", 12)  # both reused and cleared
    got = [(m.match_inside(t), m.match_contains(t)) for m in [ColourMatcher(query)] for t in stored]

    class Reference:  # a surface that slides with cv2.matchTemplate
        def __init__(self, a: np.ndarray) -> None:
            self.a, (self.h, self.w) = a, a.shape[:2]
            self.shape = (self.h, self.w)

        def slide(self, template: np.ndarray) -> tuple[float, int, int]:
            lo, _, loc, _ = cv2.minMaxLoc(cv2.matchTemplate(self.a, template, cv2.TM_SQDIFF))
            return float(max(lo, 0.0) / template.size) ** 0.5, loc[0], loc[1]

        def slide_prepared(self, template: np.ndarray, tw: int, th: int) -> tuple[float, int, int]:
            return self.slide(template)  # given the template itself (below)

    monkeypatch.setattr(colour.ColourMatcher, "_template", lambda m, _s, tw, th: m._scaled(tw, th))
    monkeypatch.setattr(colour, "_Surface", Reference)
    want = [
        (m.match_inside(t), m.match_contains(t)) for m in [ColourMatcher(query)] for t in stored
    ]
    for pair, ref_pair in zip(got, want, strict=True):
        for a, b in zip(pair, ref_pair, strict=True):
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                # float32 rounding: a few units of a squared sum near 1e8, so an exact
                # fit may come out at a few hundredths of a level instead of 0
                assert a.box == b.box and abs(a.rmse - b.rmse) < 0.1 and a.confirmed == b.confirmed
    assert got[-2][0] is not None and got[-2][0].confirmed
    assert got[-1][1] is not None and got[-1][1].confirmed


def test_shortlist_takes_candidates_nominated_by_the_region_scaled_query() -> None:
    """A parent that only the query-as-a-region vector ranks high still gets a place
    among the region candidates to verify (and in the colour check)."""
    from desktop_app.engine.partial import PartialParams, PartialSearch, _Candidate

    search = PartialSearch(None, None, "enc", PartialParams(n_full=1, n_part=1, n_window=0))  # type: ignore[arg-type]
    cands = {
        "best-full": _Candidate(sim_full=0.9),
        "plain-region": _Candidate(sim_full=0.2, sim_part=0.5),
        "parent": _Candidate(sim_full=0.1, sim_scaled=0.7),
    }
    shortlist, _mirrored = search._shortlist(cands)
    assert shortlist == ["best-full", "parent"]


@pytest.mark.slow
def test_texture_crop_as_a_region_ranks_its_parent_first(tmp_path: Path) -> None:
    """The herringbone panel of a dress, cropped at half the side and downscaled to 3/4:
    embedded as a region (one small pass at the region vectors' scale) its parent's region
    vector is the closest of all the fixture photos' regions."""
    from desktop_app.engine.encoders import load_encoder
    from desktop_app.engine.regions import index_region_boxes

    parent = FIXTURES / "texture" / "herringbone-dress.jpg"
    im = Image.open(parent).convert("RGB")
    crop = im.crop((119, 237, 319, 593))
    crop = crop.resize((crop.width * 3 // 4, crop.height * 3 // 4))
    enc = load_encoder("efficientnet-lite0", "cpu")
    photos = [im] + [Image.open(p).convert("RGB") for p in [*LARGE, *PHOTOS]]
    stored = enc.embed_regions(photos, [index_region_boxes(p.width, p.height) for p in photos])
    query = enc.embed_as_regions([crop])
    best = [float((query @ vectors.T).max()) for vectors in stored]
    assert int(np.argmax(best)) == 0


def test_a_short_keypoint_blob_is_a_clear_error() -> None:
    """A truncated blob (a damaged catalog row) is a ValueError, which the search skips
    for that candidate, not a struct error that failed the whole partial stage."""
    from desktop_app.engine.regions import keypoints_from_bytes, keypoints_to_bytes

    blob = keypoints_to_bytes(extract_keypoints(Image.open(LARGE[0]), QUERY_KEYPOINTS))
    for damaged in (b"", blob[:5], blob[: len(blob) // 2]):
        with pytest.raises(ValueError):
            keypoints_from_bytes(damaged)


@pytest.mark.slow
def test_region_pass_in_small_batches_gives_the_same_vectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The region pass runs REGION_PASS_BATCH images at a time (it set the indexing
    process's peak memory at 16): the vectors are those of one pass over all of them."""
    from desktop_app.engine.encoders import efficientnet, load_encoder
    from desktop_app.engine.regions import index_region_boxes

    photos = [Image.open(p).convert("RGB") for p in [*LARGE, *PHOTOS]][:12]
    boxes = [index_region_boxes(p.width, p.height) for p in photos]
    enc = load_encoder("efficientnet-lite0", "cpu")
    monkeypatch.setattr(efficientnet, "REGION_PASS_BATCH", 3)
    small = enc.embed_regions(photos, boxes)
    monkeypatch.setattr(efficientnet, "REGION_PASS_BATCH", 64)
    whole = enc.embed_regions(photos, boxes)
    assert len(photos) > 3
    for a, b in zip(small, whole, strict=True):
        assert a.shape == b.shape and float((a * b).sum(axis=1).min()) > 0.9999


def test_pooling_and_normalising_compute_the_plain_formulas() -> None:
    """The encoder thread's numpy shortcuts (bytes transposed before the float maths, the
    cube as two multiplies, each map powered once for all of its boxes) give what the
    plain formulas give: the normalised batch bit for bit, GeM within float rounding."""
    from desktop_app.engine.encoders.efficientnet import (
        GEM_P,
        MEAN,
        STD,
        gem,
        images_to_array,
        pool_regions,
    )

    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (90, 120, 3), np.uint8)) for _ in range(3)]
    images.append(images[0].convert("L"))
    bilinear = Image.Resampling.BILINEAR
    pixels = np.stack([np.asarray(im.convert("RGB").resize((64, 48), bilinear)) for im in images])
    plain = pixels.astype(np.float32) * (
        np.float32(1 / 255) / np.asarray(STD, np.float32)
    ) - np.asarray(MEAN, np.float32) / np.asarray(STD, np.float32)
    assert np.array_equal(images_to_array(images, (64, 48), MEAN, STD), plain.transpose(0, 3, 1, 2))

    def plain_gem(x: np.ndarray) -> np.ndarray:
        powered = np.power(np.maximum(x.astype(np.float64), 1e-6), GEM_P)
        return np.power(powered.mean(axis=(-2, -1)), 1 / GEM_P)

    fmap = rng.standard_normal((2, 40, 6, 8)).astype(np.float32)
    np.testing.assert_allclose(gem(fmap), plain_gem(fmap), rtol=1e-5)
    boxes = [(0.0, 0.0, 0.5, 0.5), (0.25, 0.5, 0.5, 0.5), (0.9, 0.9, 0.1, 0.1)]
    cells = [fmap[0][:, 0:3, 0:4], fmap[0][:, 3:6, 2:6], fmap[0][:, 5:6, 7:8]]
    want = np.stack([plain_gem(c) for c in cells])
    np.testing.assert_allclose(pool_regions(fmap[0], boxes), want, rtol=1e-5)
    assert pool_regions(fmap[0], []).shape == (0, 40)
