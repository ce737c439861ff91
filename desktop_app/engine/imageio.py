"""Reading any image a user may have into an RGB Pillow image, safely.

EXIF orientation is applied and the EXIF capture time read (``taken``), JPEGs are
decoded at reduced size when the caller needs less than the full resolution (``draft``),
every pixel mode ends as RGB, animated images give their first frame, and a megapixel
cap guards against decompression bombs. Any failure is an :class:`ImageLoadError` with a
reason a user can act on, whatever the bytes (fuzzed: ``bench/fuzz_loading.py``). Files
are opened without blocking and only if regular (``fingerprint.open_regular``) and closed
when loading ends.

Threads: any; the indexer's loader threads and the search pool call it concurrently
(no shared state).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from desktop_app.engine.errors import ImageLoadError
from desktop_app.engine.fingerprint import open_regular

log = logging.getLogger(__name__)

# We enforce our own, configurable cap before decoding (see _check_size); Pillow's global
# bomb check would otherwise raise or warn with a message that names no setting.
Image.MAX_IMAGE_PIXELS = None
# A truncated file is an error we report, never a half-grey image we silently index.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_MEGAPIXELS = 100.0

try:  # HEIC/HEIF photos from phones, when the optional plugin is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the optional extra
    HEIF_AVAILABLE = False


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, possibly reduced (see ``scale``)
    width: int  # full size after EXIF orientation
    height: int
    taken: str = ""  # EXIF capture time, "YYYY-MM-DDTHH:MM:SS" on the camera's clock; "" none

    @property
    def scale(self) -> float:
        """Factor from full-size pixel coordinates to ``image`` coordinates."""
        return self.image.width / self.width if self.width else 1.0


Source = Path | str | bytes | Image.Image


def load_image(
    source: Source,
    *,
    max_side: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    draft_floor: int | None = None,
) -> LoadedImage:
    """Load ``source`` as RGB; with ``max_side`` the result fits in max_side×max_side.

    ``draft_floor`` (≤ ``max_side``) lets a JPEG decode at a reduced scale whose long side
    is at least ``draft_floor`` even when that falls short of ``max_side``: a 2000 px
    photo asked for at 1024 then decodes at half size (1000 px) instead of in full and
    resized, four times fewer pixels. For a caller to whom 1000 px serves as well as 1024
    (the search query); without it, JPEG draft never undershoots ``max_side``."""
    path = Path(source) if isinstance(source, str | Path) else None
    opened = source if isinstance(source, Image.Image) else _open(source, path)
    result: LoadedImage | None = None
    try:
        result = _decode(opened, path, max_side, max_megapixels, draft_floor)
        return result
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError(path, "not enough memory to decode this image") from exc
    except Exception as exc:  # hostile bytes reach Pillow's odder corners (fuzzed)
        raise ImageLoadError(path, _describe_decode_error(exc)) from exc
    finally:
        if opened is not source:  # release the file now, not at garbage collection
            if result is not None and result.image is opened:
                fp = getattr(opened, "fp", None)
                if fp is not None:
                    fp.close()
            else:
                opened.close()


def _decode(
    im: Image.Image,
    path: Path | None,
    max_side: int | None,
    max_megapixels: float,
    draft_floor: int | None = None,
) -> LoadedImage:
    _check_size(im, path, max_megapixels)
    if getattr(im, "is_animated", False):
        im.seek(0)
    exif = _read_exif(im)
    width, height = _oriented_size(im, exif)  # before draft() shrinks im.size
    if max_side and im.format == "JPEG":
        im.draft("RGB", fit_size(im.size, min(max_side, draft_floor or max_side)))
    try:
        im.load()
        im = _exif_transpose(im)
        rgb = to_rgb(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(path, _describe_decode_error(exc)) from exc
    if max_side and max(rgb.size) > max_side:
        rgb = rgb.resize(fit_size(rgb.size, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return LoadedImage(rgb, width, height, taken_time(exif))


def read_header(source: Path | str) -> tuple[int, int, str]:
    """The oriented width and height and the EXIF capture time (``LoadedImage.taken``),
    from the header alone, without decoding pixels."""
    path = Path(source)
    im = _open(path, path)
    try:
        exif = _read_exif(im)
        return (*_oriented_size(im, exif), taken_time(exif))
    finally:
        im.close()


def _open(source: Path | str | bytes, path: Path | None) -> Image.Image:
    try:
        if isinstance(source, bytes):
            return Image.open(io.BytesIO(source))
        assert path is not None
        if path.is_dir():
            raise ImageLoadError(path, "is a folder, not an image")
        fh = open_regular(path)  # never blocks on a FIFO named like a photo
        try:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageLoadError(path, "empty file (0 bytes)")
            im = Image.open(fh)
        except BaseException:
            fh.close()
            raise
        # Pillow closes a file it opened itself when done with it; it did not open this
        # one, so say it may (otherwise the descriptor lives until garbage collection).
        im._exclusive_fp = True
        return im
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except PermissionError as exc:
        raise ImageLoadError(path, "permission denied: the file cannot be read") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(path, "not an image, or a format this app cannot read") from exc
    except ImageLoadError:
        raise
    except Exception as exc:  # OSError, SyntaxError, ValueError and, on fuzzed bytes, more
        raise ImageLoadError(path, _describe_decode_error(exc)) from exc


def _check_size(im: Image.Image, path: Path | None, max_megapixels: float) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(path, f"invalid image size {w}×{h}")
    mp = w * h / 1e6
    if mp > max_megapixels:
        raise ImageLoadError(
            path,
            f"image is {w}×{h} ({mp:.0f} MP), above the {max_megapixels:g} MP limit "
            "(raise max_megapixels in the settings to index it)",
        )


def _exif_transpose(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the pixels as stored (the
    image is fine, only its metadata is not)."""
    try:
        return ImageOps.exif_transpose(im) or im
    except Exception as exc:  # Pillow raises several kinds on corrupt EXIF
        log.info("ignoring a broken EXIF block (%s)", exc)
        return im


def _read_exif(im: Image.Image) -> Image.Exif | None:
    try:
        return im.getexif()
    except Exception:  # a broken EXIF block must not make the image unreadable
        return None


def _oriented_size(im: Image.Image, exif: Image.Exif | None) -> tuple[int, int]:
    w, h = im.size
    try:
        orientation = exif.get(ORIENTATION, 1) if exif is not None else 1
    except Exception:
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


ORIENTATION = 0x0112
EXIF_IFD = 0x8769
# Where a capture time may be, best first: DateTimeOriginal and DateTimeDigitized (in the
# Exif sub-IFD), then IFD0's DateTime (the last edit, still closer than the file's time).
_TIME_TAGS = ((EXIF_IFD, 0x9003), (EXIF_IFD, 0x9004), (None, 0x0132))


def taken_time(exif: Image.Exif | None) -> str:
    """The capture time as "YYYY-MM-DDTHH:MM:SS" on the camera's clock (EXIF has no time
    zone as a rule), or "" when there is none or it is blank, zero or malformed."""
    if exif is None:
        return ""
    for ifd, tag in _TIME_TAGS:
        try:
            value = (exif.get_ifd(ifd) if ifd is not None else exif).get(tag)
        except Exception:  # a broken sub-IFD: try the next tag
            continue
        parsed = parse_exif_time(value)
        if parsed:
            return parsed
    return ""


def parse_exif_time(value: object) -> str:
    """EXIF's "YYYY:MM:DD HH:MM:SS" (as str or bytes, maybe NUL-padded) in ISO form."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return ""
    text = value.strip("\x00 ")[:19]
    try:
        when = datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
    except ValueError:
        try:  # some software writes the date alone
            when = datetime.strptime(text[:10], "%Y:%m:%d")
        except ValueError:
            return ""
    return when.isoformat() if 1826 <= when.year <= 9999 else ""


def fit_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled to fit in ``max_side`` × ``max_side`` (never enlarged), each side
    rounded and at least 1."""
    w, h = size
    s = min(1.0, max_side / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def _describe_decode_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return f"truncated or incomplete file ({text})"
    return f"corrupt or unreadable image data ({text})"


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white (on black for
    light content that white would erase)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im)), "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _background_for(rgba))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _background_for(rgba: Image.Image) -> tuple[int, int, int, int]:
    """White, unless the visible pixels are mostly light (white line art or text on a
    transparent background): then black, so the content does not vanish."""
    small = np.asarray(rgba.reduce(max(1, max(rgba.size) // 256)), np.float32)
    alpha = small[..., 3] / 255.0
    if alpha.sum() < 1.0:
        return (255, 255, 255, 255)
    luminance = small[..., :3].mean(axis=2)
    visible_mean = float((luminance * alpha).sum() / alpha.sum())
    return (0, 0, 0, 255) if visible_mean > 200 else (255, 255, 255, 255)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """High-bit-depth grey to 8 bits, keeping dark images dark (no per-image stretch)."""
    is_float = a.dtype.kind == "f"
    a = a.astype(np.float32)
    top = float(a.max()) if a.size else 0.0
    if is_float and 0.0 < top <= 1.0:
        a = a * 255.0  # float images in [0, 1]
    elif top > 255.0:
        a = a / 257.0  # 16-bit range
    return np.clip(a, 0, 255).astype(np.uint8)
