"""Image loading: every mode a photo library holds ends as RGB; broken files give a
typed error with a reason a user can act on."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.engine.errors import ImageLoadError
from desktop_app.engine.imageio import load_image, read_header

from .conftest import PHOTOS


def save(im: Image.Image, path: Path, **kw: object) -> Path:
    im.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "CMYK", "1", "L", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    base = Image.open(PHOTOS[0]).convert("RGB")
    if mode == "I;16":
        arr = np.asarray(base.convert("L"), np.uint16) * 257
        im = Image.fromarray(arr)
        assert im.mode == "I;16"
        path = save(im, tmp_path / "x.png")
    elif mode in ("I", "F"):
        arr = np.asarray(base.convert("L"), np.float32) / (255.0 if mode == "F" else 1 / 257)
        im = Image.fromarray(arr.astype(np.int32 if mode == "I" else np.float32))
        assert im.mode == mode
        path = save(im, tmp_path / "x.tiff")
    else:
        im = base.convert(mode)
        ext = "jpg" if mode == "CMYK" else "png" if mode != "1" else "bmp"
        path = save(im, tmp_path / f"x.{ext}")
    loaded = load_image(path)
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == base.size
    # the content survives: mean brightness close to the original's grey level
    grey = np.asarray(loaded.image.convert("L"), np.float32).mean()
    ref = np.asarray(base.convert("L"), np.float32).mean()
    tolerance = 60 if mode == "1" else 12
    assert abs(grey - ref) < tolerance, (mode, grey, ref)


def test_sixteen_bit_png_keeps_dark_images_dark(tmp_path: Path) -> None:
    arr = np.full((40, 60), 1000, np.uint16)  # very dark in 16-bit terms
    path = save(Image.fromarray(arr), tmp_path / "dark.png")
    px = np.asarray(load_image(path).image)
    assert px.max() <= 5


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    px = np.asarray(load_image(save(im, tmp_path / "t.png")).image)
    assert (px == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (64, 32), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    path = save(im, tmp_path / "o.jpg", exif=exif)
    loaded = load_image(path)
    assert (loaded.width, loaded.height) == (32, 64)
    assert loaded.image.size == (32, 64)
    assert read_header(path) == (32, 64, "")


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30, 30), c) for c in ("blue", "yellow", "green")]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    px = np.asarray(load_image(path).image)
    assert px[..., 2].mean() > 200 and px[..., 0].mean() < 50  # blue


def test_reduced_decode_fits_max_side_and_keeps_full_size(tmp_path: Path) -> None:
    im = Image.new("RGB", (3000, 2000), "white")
    path = save(im, tmp_path / "big.jpg", quality=80)
    loaded = load_image(path, max_side=224)
    assert max(loaded.image.size) == 224
    assert (loaded.width, loaded.height) == (3000, 2000)
    assert loaded.scale == pytest.approx(224 / 3000, rel=0.01)


def test_in_memory_sources(tmp_path: Path) -> None:
    data = PHOTOS[1].read_bytes()
    assert load_image(data).image.mode == "RGB"
    assert load_image(Image.open(io.BytesIO(data))).image.mode == "RGB"


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not an image"), "not an image"),
        (lambda p: p.write_bytes(PHOTOS[0].read_bytes()[:3000]), "truncated"),
    ],
)
def test_broken_files_raise_with_reason(tmp_path: Path, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "broken.jpg"
    make(path)
    with pytest.raises(ImageLoadError) as err:
        load_image(path)
    assert reason in err.value.reason


def test_megapixel_cap_refuses_before_decoding(tmp_path: Path) -> None:
    path = save(Image.new("1", (20000, 20000)), tmp_path / "huge.png")
    with pytest.raises(ImageLoadError) as err:
        load_image(path, max_megapixels=100)
    assert "20000×20000" in err.value.reason and "100 MP" in err.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_light_content_on_transparency_stays_visible(tmp_path: Path) -> None:
    """White line art on a transparent background would vanish on white."""
    im = Image.new("RGBA", (64, 64), (255, 255, 255, 0))
    for x in range(0, 64, 4):
        for y in range(64):
            im.putpixel((x, y), (255, 255, 255, 255))
    px = np.asarray(load_image(save(im, tmp_path / "lines.png")).image.convert("L"))
    assert px.std() > 60  # stripes, not a blank image


def test_draft_floor_decodes_a_large_jpeg_at_a_reduced_scale(tmp_path: Path) -> None:
    big = Image.open(PHOTOS[0]).convert("RGB").resize((2000, 1500))
    path = save(big, tmp_path / "big.jpg", quality=90)
    plain = load_image(path, max_side=1024)
    drafted = load_image(path, max_side=1024, draft_floor=768)
    assert plain.image.size == (1024, 768)  # never below max_side without the floor
    assert drafted.image.size == (1000, 750)  # JPEG's 1/2 scale, not a full decode
    assert (drafted.width, drafted.height) == (2000, 1500)  # the file's own size
    small = load_image(save(big.resize((800, 600)), tmp_path / "small.jpg"), max_side=1024)
    assert small.image.size == (800, 600)
