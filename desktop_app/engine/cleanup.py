"""Query clean-up before embedding: remove text overlays (captions on screenshots and
memes) and enhance dark or flat photos.

Text removal is classical, because OpenCV's EAST/DB text detectors need model files this
app does not ship. Overlay captions are drawn in extreme values against an outline or a
plain band (white on black, black on white); such stroke pixels are marked, a wide
closing joins letters into lines, and connected regions shaped like lines of text (wide,
short, densely stroked) become a mask (the strokes themselves, widened) that
``cv2.inpaint`` fills from the surroundings. Text printed in mid-tones (a label on a
product) is left alone on purpose.

Enhancement equalises contrast locally (CLAHE on the lightness), lifts a dark image's
brightness with a gamma curve, and sharpens slightly (PIL ImageEnhance).

Whether each step helps retrieval is measured by ``bench/bench_cleanup.py``; the app's
defaults follow that measurement (see the README). Pure functions on Pillow images: any
thread (the search pool runs them).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageEnhance

MIN_TEXT_HEIGHT = 6  # px at the working size
MAX_TEXT_HEIGHT_FRACTION = 0.2  # a line of text is at most this share of the height
MIN_TEXT_ASPECT = 2.0  # width / height of a text line
MIN_STROKE_FILL = 0.12  # share of a candidate line's box that is stroke pixels
BRIGHT, DARK = 235, 30  # grey levels of overlay text and its outline
DARK_MEAN = 0.35  # mean lightness under which brightness is lifted
SHARPNESS = 1.3


@dataclass(frozen=True)
class Cleanup:
    remove_text: bool = False
    enhance: bool = False

    @property
    def active(self) -> bool:
        return self.remove_text or self.enhance

    def describe(self) -> str:
        steps = [
            s for s, on in (("text removed", self.remove_text), ("enhanced", self.enhance)) if on
        ]
        return ", ".join(steps)


NO_CLEANUP = Cleanup()
# What a new query gets in the window. bench/bench_cleanup.py (300 photos, 60 queries):
# text removal lifted captioned recall@1 from 0.983 to 1.000 (one query), enhancement
# gained nothing on low-light queries and costs ~20% per search: both off (README).
DEFAULT_CLEANUP = NO_CLEANUP


def clean_query(image: Image.Image, cleanup: Cleanup) -> Image.Image:
    """``image`` with the chosen steps applied (same size); unchanged when none is on."""
    if cleanup.remove_text:
        image = remove_text(image)
    if cleanup.enhance:
        image = enhance(image)
    return image


def text_mask(image: Image.Image) -> np.ndarray:
    """A uint8 mask (255 = text) of the regions that look like lines of overlaid text:
    near-white strokes outlined in near-black (or the reverse), joined into lines."""
    rgb = np.asarray(image.convert("RGB"))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    near = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    bright, dark = grey >= BRIGHT, grey <= DARK
    dark_near = cv2.dilate(dark.astype(np.uint8), near) > 0
    bright_near = cv2.dilate(bright.astype(np.uint8), near) > 0
    # overlay text is drawn in extreme values against an outline or a plain band: a
    # stroke pixel is extreme and has the opposite extreme within a couple of pixels
    strokes = ((bright & dark_near) | (dark & bright_near)).astype(np.uint8) * 255
    joined = cv2.morphologyEx(
        strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (max(9, w // 30), 5))
    )
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    mask = np.zeros((h, w), np.uint8)
    for i in range(1, n):
        x, y, bw, bh, _area = stats[i]
        if not MIN_TEXT_HEIGHT <= bh <= MAX_TEXT_HEIGHT_FRACTION * h:
            continue
        if bw < MIN_TEXT_ASPECT * bh:
            continue
        fill = float(np.count_nonzero(strokes[y : y + bh, x : x + bw])) / (bw * bh)
        if fill >= MIN_STROKE_FILL:
            mask[y : y + bh, x : x + bw] = np.maximum(
                mask[y : y + bh, x : x + bw], cv2.dilate(strokes[y : y + bh, x : x + bw], near)
            )
    if mask.any():  # a margin: anti-aliased glyph edges and outlines go too
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    return mask


def remove_text(image: Image.Image) -> Image.Image:
    mask = text_mask(image)
    if not mask.any():
        return image
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    filled = cv2.inpaint(rgb, mask, 5, cv2.INPAINT_TELEA)
    return Image.fromarray(filled)


def enhance(image: Image.Image) -> Image.Image:
    rgb = np.asarray(image.convert("RGB"))
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    light = lab[:, :, 0]
    mean = float(light.mean()) / 255.0
    if 0.0 < mean < DARK_MEAN:  # lift a dark photo towards mid-grey
        gamma = np.log(0.5) / np.log(mean)
        table = np.clip(((np.arange(256) / 255.0) ** gamma) * 255.0, 0, 255).astype(np.uint8)
        light = cv2.LUT(light, table)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    lab[:, :, 0] = clahe.apply(light)
    out = Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
    return ImageEnhance.Sharpness(out).enhance(SHARPNESS)
