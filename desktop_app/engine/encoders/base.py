"""The one small interface every encoder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image

from desktop_app.engine.errors import TextSearchUnsupported

NormBox = tuple[float, float, float, float]  # x, y, w, h as fractions of the image


class Encoder(ABC):
    """Turns images (and, for CLIP, texts) into L2-normalised float32 vectors.

    ``id`` names the vector space: two encoders with the same id produce comparable
    vectors, so the id keys the stored vectors and the Chroma collection.
    """

    id: str
    label: str  # short human name, e.g. "CLIP ViT-B-32"
    dim: int
    device: str  # "cpu", "cuda", "mps"
    batch_size: int
    input_size: int  # the longest side the loader needs to give us
    has_text: bool = False

    @abstractmethod
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, dim) float32, each row of unit length."""

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise TextSearchUnsupported(
            f"{self.label} has no text tower: text search needs a CLIP model "
            "(for example --model ViT-B-32:laion2b_s34b_b79k)"
        )

    def embed_regions(
        self, images: Sequence[Image.Image], boxes: Sequence[Sequence[NormBox]]
    ) -> list[np.ndarray]:
        """Vectors for boxes (fractions of width and height) of each image: (len(boxes[i]),
        dim) per image. This generic version embeds each crop; encoders with a spatial
        feature map override it with regional pooling of one pass (far cheaper)."""
        out = []
        for im, image_boxes in zip(images, boxes, strict=True):
            w, h = im.size
            crops = [im.crop(_pixel_box(box, w, h)) for box in image_boxes]
            out.append(self.embed_in_batches(crops))
        return out

    def embed_as_regions(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Query images as the stored region vectors see a part of a picture: (n, dim).
        Here region vectors are crops embedded on their own, so that is the plain
        embedding; encoders that pool regions from one pass over the whole picture
        override it to look at the query the same way (at that pass's scale)."""
        return self.embed_images(images)

    @property
    def region_encoder(self) -> Encoder:
        """The encoder whose vector space the region vectors and the query windows live
        in. Itself for encoders whose feature map pools into regions in one pass; an
        encoder without one (CLIP) hands regions to a small CNN, so region vectors cost
        one cheap pass instead of one pass per region."""
        return self

    def embed_in_batches(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self.embed_images(images[i : i + self.batch_size])
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(parts)

    def describe(self) -> str:
        return f"{self.label} on {self.device.upper() if self.device != 'cpu' else 'CPU'}"


def _pixel_box(box: NormBox, w: int, h: int) -> tuple[int, int, int, int]:
    """A normalised box in pixels, at least 1×1 inside the image (a 1×1 or 65535×1
    image would otherwise give empty crops the encoders cannot take)."""
    x, y, bw, bh = box
    x0 = min(max(0, round(x * w)), w - 1)
    y0 = min(max(0, round(y * h)), h - 1)
    return (
        x0,
        y0,
        max(x0 + 1, min(w, round((x + bw) * w))),
        max(y0 + 1, min(h, round((y + bh) * h))),
    )


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, 1e-12)
    return out
