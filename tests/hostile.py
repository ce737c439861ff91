"""A generated corpus of hostile and odd files, for the "never crash or stall" tests.

:func:`make_hostile_corpus` writes each kind into a folder and returns what indexing
must make of it: ``"ok"`` (indexed), ``"failed"`` (listed with a reason) or
``"ignored"`` (not an image name the scanner looks at: hidden files and folders,
symlinked folders, which are not followed). Where the outcome depends on the machine
(a file unreadable to a normal user is readable to root), ``"ok|failed"``.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Expect = str  # "ok" | "failed" | "ignored" | "ok|failed"


def _rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8))


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims 10 gigapixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def jpeg_with_exif(exif: bytes) -> bytes:
    """A valid JPEG with an APP1 segment holding ``exif`` (possibly garbage)."""
    jpg = _encode(_rgb(seed=3), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    return jpg[:2] + app1 + jpg[2:]


def _animated_gif() -> bytes:
    frames = [_rgb(32, 32, seed=i).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _multipage_tiff() -> bytes:
    frames = [_rgb(40, 30, seed=i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _animated_webp() -> bytes:
    frames = [_rgb(32, 32, seed=i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    return buf.getvalue()


def _palette_transparent() -> bytes:
    im = _rgb(40, 40, seed=5).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _encode(im, "PNG", transparency=0)


def _sixteen_bit_grey(fmt: str) -> bytes:
    a = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21).astype(np.uint16)
    return _encode(Image.fromarray(a), fmt)  # uint16: mode I;16


def _float_tiff() -> bytes:
    a = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    return _encode(Image.fromarray(a), "TIFF")  # float32: mode F


def _bad_crc_png() -> bytes:
    data = bytearray(_encode(_rgb(seed=6), "PNG"))
    data[29] ^= 0xFF  # inside IHDR's CRC
    return bytes(data)


def _oriented_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_rgb(64, 32, seed=7), "JPEG", exif=exif.tobytes())


FILES: dict[str, tuple[Callable[[], bytes], Expect]] = {
    "plain.jpg": (lambda: _encode(_rgb(seed=1), "JPEG"), "ok"),
    "plain.png": (lambda: _encode(_rgb(seed=2), "PNG"), "ok"),
    "upper-case.JPG": (lambda: _encode(_rgb(seed=8), "JPEG"), "ok"),
    "progressive.jpg": (lambda: _encode(_rgb(seed=9), "JPEG", progressive=True), "ok"),
    "zero-bytes.jpg": (lambda: b"", "failed"),
    "truncated.jpg": (lambda: _encode(_rgb(400, 300, seed=10), "JPEG")[:2000], "failed"),
    "truncated.png": (lambda: _encode(_rgb(400, 300, seed=11), "PNG")[:3000], "failed"),
    "only-soi.jpg": (lambda: b"\xff\xd8", "failed"),
    "text-not-image.jpg": (lambda: b"hello, I am not a photo\n" * 20, "failed"),
    "html-not-image.png": (lambda: b"<!doctype html><html><body>404</body></html>", "failed"),
    "png-named.jpg": (lambda: _encode(_rgb(seed=12), "PNG"), "ok"),
    "jpeg-named.png": (lambda: _encode(_rgb(seed=13), "JPEG"), "ok"),
    "bmp-named.webp": (lambda: _encode(_rgb(seed=14), "BMP"), "ok"),
    "one-by-one.png": (lambda: _encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"), "ok"),
    "sliver-65535x1.png": (lambda: _encode(Image.new("RGB", (65535, 1), (200, 9, 9)), "PNG"), "ok"),
    "sliver-1x65535.png": (lambda: _encode(Image.new("L", (1, 65535), 77), "PNG"), "ok"),
    "wide-30000x200.png": (
        lambda: _encode(Image.new("RGB", (30000, 200), (5, 5, 90)), "PNG"),
        "ok",
    ),
    "bomb-10-gigapixels.png": (png_bomb, "failed"),
    "bad-crc.png": (_bad_crc_png, "failed"),
    "grey-16-bit.png": (lambda: _sixteen_bit_grey("PNG"), "ok"),
    "grey-16-bit.tif": (lambda: _sixteen_bit_grey("TIFF"), "ok"),
    "float.tif": (_float_tiff, "ok"),
    "cmyk.jpg": (lambda: _encode(_rgb(seed=15).convert("CMYK"), "JPEG"), "ok"),
    "cmyk.tif": (lambda: _encode(_rgb(seed=16).convert("CMYK"), "TIFF"), "ok"),
    "palette-transparent.png": (_palette_transparent, "ok"),
    "grey-alpha.png": (lambda: _encode(_rgb(seed=17).convert("LA"), "PNG"), "ok"),
    "fully-transparent.png": (
        lambda: _encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), "PNG"),
        "ok",
    ),
    "one-bit.png": (lambda: _encode(_rgb(seed=18).convert("1"), "PNG"), "ok"),
    "broken-exif.jpg": (
        lambda: jpeg_with_exif(b"Exif\x00\x00MM\x00*\xff\xff\xff\xff" + b"\x00" * 40),
        "ok",
    ),
    "garbage-exif.jpg": (lambda: jpeg_with_exif(b"Exif\x00\x00" + os.urandom(200)), "ok"),
    "rotated-exif.jpg": (_oriented_jpeg, "ok"),
    "animated.gif": (_animated_gif, "ok"),
    "animated.webp": (_animated_webp, "ok"),
    "multi-page.tif": (_multipage_tiff, "ok"),
    "plain.bmp": (lambda: _encode(_rgb(seed=19), "BMP"), "ok"),
    "plain.webp": (lambda: _encode(_rgb(seed=20), "WEBP"), "ok"),
    "trailing-garbage.jpg": (lambda: _encode(_rgb(seed=21), "JPEG") + os.urandom(5000), "ok"),
    "random-bytes.jpg": (lambda: os.urandom(4096), "failed"),
    "unicode-日本語-émoji-🙂.jpg": (lambda: _encode(_rgb(seed=22), "JPEG"), "ok"),
    "rtl-\u202eslogan.jpg": (lambda: _encode(_rgb(seed=23), "JPEG"), "ok"),
    "new\nline.jpg": (lambda: _encode(_rgb(seed=24), "JPEG"), "ok"),
    " leading space and trailing dot..jpg": (lambda: _encode(_rgb(seed=25), "JPEG"), "ok"),
    ("x" * 240) + ".jpg": (lambda: _encode(_rgb(seed=26), "JPEG"), "ok"),
    ".hidden.jpg": (lambda: _encode(_rgb(seed=27), "JPEG"), "ignored"),
    "not-an-image.txt": (lambda: b"text", "ignored"),
}


def make_hostile_corpus(folder: Path) -> dict[str, Expect]:
    """Write the corpus into ``folder``; returns {path: expected outcome}."""
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, Expect] = {}
    for name, (make, outcome) in FILES.items():
        path = folder / name
        path.write_bytes(make())
        expect[str(path)] = outcome
    # a name that is not valid UTF-8 (Latin-1 bytes)
    odd = folder / os.fsdecode(b"latin1-caf\xe9-\xff.jpg")
    odd.write_bytes(_encode(_rgb(seed=28), "JPEG"))
    expect[str(odd)] = "ok"
    # links: to an image, to nothing, to itself, to a device, to the folder above
    (folder / "link-to-image.jpg").symlink_to(folder / "plain.jpg")
    expect[str(folder / "link-to-image.jpg")] = "ok"
    (folder / "dangling-link.jpg").symlink_to(folder / "no-such-file.jpg")
    expect[str(folder / "dangling-link.jpg")] = "failed"
    (folder / "self-loop.jpg").symlink_to(folder / "self-loop.jpg")
    expect[str(folder / "self-loop.jpg")] = "failed"
    (folder / "device.jpg").symlink_to("/dev/null")
    expect[str(folder / "device.jpg")] = "failed"
    (folder / "loop-dir").symlink_to(folder)
    # a folder named like an image, a hidden folder, an unreadable file
    (folder / "folder.jpg").mkdir()
    (folder / "folder.jpg" / "inside.jpg").write_bytes(_encode(_rgb(seed=29), "JPEG"))
    expect[str(folder / "folder.jpg" / "inside.jpg")] = "ok"
    (folder / ".hidden-folder").mkdir()
    (folder / ".hidden-folder" / "secret.jpg").write_bytes(_encode(_rgb(seed=30), "JPEG"))
    expect[str(folder / ".hidden-folder" / "secret.jpg")] = "ignored"
    unreadable = folder / "unreadable.jpg"
    unreadable.write_bytes(_encode(_rgb(seed=31), "JPEG"))
    unreadable.chmod(0)
    expect[str(unreadable)] = "ok|failed"  # root reads it anyway
    # special files named like photos
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "fifo.jpg")
        expect[str(folder / "fifo.jpg")] = "failed"
    return expect


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket named like a photo (the caller closes it)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock
