"""What the indexer computes for one distinct image content.

Split in two so the indexer can pipeline: ``prepare`` runs in loader threads (decoding
and resizing release the GIL), ``embed`` runs on the single indexing thread that owns the
encoder and writes the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from desktop_app.engine.catalog import VectorRow
from desktop_app.engine.colour import tiny_to_bytes
from desktop_app.engine.encoders import Encoder
from desktop_app.engine.encoders.base import NormBox
from desktop_app.engine.imageio import LoadedImage
from desktop_app.engine.regions import (
    INDEX_KEYPOINTS,
    box_to_pixels,
    extract_keypoints,
    index_region_boxes,
    keypoints_to_bytes,
)
from desktop_app.engine.thumbs import THUMB_SIDE, save_thumbnail


@dataclass
class Prepared:
    """A decoded image ready for the encoder."""

    fingerprint: str
    width: int  # full size, oriented
    height: int
    image: Image.Image  # reduced to what the analyser needs
    keypoints: bytes | None = None  # serialised local features (region matching)
    tiny: bytes | None = None  # serialised colour copy (region matching)
    boxes: list[NormBox] = field(default_factory=list)  # region boxes, fractions
    taken: str = ""  # EXIF capture time (imageio.LoadedImage.taken)


@dataclass
class Analysis:
    """Everything stored for one content: its vectors and cached features."""

    fingerprint: str
    vectors: list[VectorRow]
    features: dict[str, bytes] = field(default_factory=dict)


class Analyser:
    """Full-image vectors only; region matching extends this with region vectors and
    local features."""

    def __init__(self, encoder: Encoder, thumbnails: Path | None = None) -> None:
        self.encoder = encoder
        self.thumbnails = thumbnails  # write grid thumbnails here while decoded anyway

    @property
    def load_side(self) -> int:
        """The longest side the loader must decode to (JPEGs decode faster when smaller)."""
        return self.encoder.input_size

    @property
    def decode_side(self) -> int:
        """What the loader decodes to: enough for the analysis and the thumbnail."""
        return max(self.load_side, THUMB_SIDE if self.thumbnails else 0)

    def prepare(self, fingerprint: str, loaded: LoadedImage) -> Prepared:
        """Runs in a loader thread."""
        if self.thumbnails is not None:
            save_thumbnail(loaded.image, self.thumbnails, fingerprint)
        return Prepared(fingerprint, loaded.width, loaded.height, loaded.image, taken=loaded.taken)

    def embed(self, batch: Sequence[Prepared]) -> list[Analysis]:
        vectors = self.encoder.embed_images([p.image for p in batch])
        return [
            Analysis(p.fingerprint, [VectorRow(p.fingerprint, "full", 0, None, v)])
            for p, v in zip(batch, vectors, strict=True)
        ]


KEYPOINTS = "orb"  # the features-table kind of the cached keypoint blobs
# The full-image vector in the region encoder's space, stored when that encoder is not the
# main one (CLIP): query windows are compared against it.
REGION_FULL = "region-full"
TINY = "tiny"  # the features-table kind of the colour copies (colour.py)
REGION_FEATURES = (KEYPOINTS, TINY)


@dataclass(frozen=True)
class RegionScheme:
    """How images are cut into regions at index time (settings ``region_*``)."""

    scale: float = 0.5  # region side as a fraction of the image's side
    grid: int = 3  # grid × grid overlapping windows
    keypoints: int = 500  # local features kept per image for verification

    @property
    def scales(self) -> tuple[tuple[float, int], ...]:
        return ((self.scale, self.grid),)


class RegionAnalyser(Analyser):
    """Full vector + region vectors (regional pooling) + cached ORB keypoints + a tiny
    colour copy.

    Keypoints and the colour copy are computed in the loader threads (OpenCV releases
    the GIL), the vectors on the indexing thread. Region boxes are stored in full-size pixels.
    """

    def __init__(
        self, encoder: Encoder, scheme: RegionScheme | None = None, thumbnails: Path | None = None
    ) -> None:
        super().__init__(encoder, thumbnails)
        self.scheme = scheme or RegionScheme()
        self.kp_settings = replace(INDEX_KEYPOINTS, n_keep=self.scheme.keypoints)

    @property
    def load_side(self) -> int:
        return max(self.encoder.input_size, self.kp_settings.max_side)

    def prepare(self, fingerprint: str, loaded: LoadedImage) -> Prepared:
        super().prepare(fingerprint, loaded)  # the thumbnail
        keypoints = extract_keypoints(
            loaded.image, self.kp_settings, orig_size=(loaded.width, loaded.height)
        )
        boxes = index_region_boxes(loaded.width, loaded.height, self.scheme.scales)
        return Prepared(
            fingerprint,
            loaded.width,
            loaded.height,
            loaded.image,
            keypoints_to_bytes(keypoints),
            tiny_to_bytes(loaded.image, loaded.width, loaded.height),
            list(boxes),
            loaded.taken,
        )

    def embed(self, batch: Sequence[Prepared]) -> list[Analysis]:
        analyses = super().embed(batch)
        images = [p.image for p in batch]
        regional = self.encoder.region_encoder
        regions = regional.embed_regions(images, [p.boxes for p in batch])
        if regional is not self.encoder:
            for a, p, v in zip(analyses, batch, regional.embed_images(images), strict=True):
                a.vectors.append(VectorRow(p.fingerprint, REGION_FULL, 0, None, v))
        for a, p, vectors in zip(analyses, batch, regions, strict=True):
            for i, (box, v) in enumerate(zip(p.boxes, vectors, strict=True)):
                pixel_box = box_to_pixels(box, p.width, p.height)
                a.vectors.append(VectorRow(p.fingerprint, "region", i + 1, pixel_box, v))
            if p.keypoints is not None:
                a.features[KEYPOINTS] = p.keypoints
            if p.tiny is not None:
                a.features[TINY] = p.tiny
        return analyses
