"""``histogram``: an instant encoder without torch that describes colour layout only.

Each vector joins a downscaled copy of the image (its colour layout, 12×12 RGB) and a
4×4×4 colour histogram, both centred, plus one constant component: scores then run from
0 (opposite layouts) to 1 (the same picture), like those of the CNN encoder, so
thresholds mean the same. It finds exact copies, resized and re-compressed copies and crops (with
the keypoint and colour checks of partial matching), never semantics: a red shoe is not
"like" a blue one. It exists for the fast test tier (most tests need deterministic
vectors, not a neural network) and as a last resort on machines where torch cannot run.

Pure numpy and Pillow; safe on any thread (it holds no state beyond constants).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from desktop_app.engine.encoders.base import Encoder, l2_normalise

MODEL_ID = "histogram"
LAYOUT_SIDE = 12
BINS = 4  # per channel: 64 histogram bins
HISTOGRAM_WEIGHT = 0.5  # of the histogram part against the layout part


def _describe(image: Image.Image) -> np.ndarray:
    rgb = image.convert("RGB")
    small = np.asarray(
        rgb.resize((LAYOUT_SIDE, LAYOUT_SIDE), Image.Resampling.BOX), np.float32
    ).reshape(-1)
    layout = small / 255.0
    layout -= layout.mean()
    layout /= max(float(np.linalg.norm(layout)), 1e-6)
    pixels = np.asarray(rgb.resize((64, 64), Image.Resampling.BOX), np.uint8).reshape(-1, 3)
    q = (pixels // (256 // BINS)).astype(np.int64)
    codes = q[:, 0] * BINS * BINS + q[:, 1] * BINS + q[:, 2]
    hist = np.sqrt(np.bincount(codes, minlength=BINS**3).astype(np.float32))
    hist -= hist.mean()
    hist /= max(float(np.linalg.norm(hist)), 1e-6)
    norm = float(np.hypot(1.0, HISTOGRAM_WEIGHT))
    return np.concatenate([layout / norm, HISTOGRAM_WEIGHT * hist / norm, [1.0]])


class HistogramEncoder(Encoder):
    label = "histogram"
    dim = LAYOUT_SIDE * LAYOUT_SIDE * 3 + BINS**3 + 1
    input_size = 224
    has_text = False

    def __init__(self, batch_size: int = 0) -> None:
        self.id = MODEL_ID
        self.device = "cpu"
        self.batch_size = batch_size or 32

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(np.stack([_describe(im) for im in images]))
