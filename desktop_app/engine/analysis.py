"""What the indexer computes for one distinct image content.

Split in two so the indexer can pipeline: ``prepare`` runs in loader threads (decoding
and resizing release the GIL), ``embed`` runs on the single indexing thread that owns the
encoder and writes the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from desktop_app.engine.catalog import VectorRow
from desktop_app.engine.encoders import Encoder
from desktop_app.engine.imageio import LoadedImage


@dataclass
class Prepared:
    """A decoded image ready for the encoder."""

    fingerprint: str
    width: int  # full size, oriented
    height: int
    image: Image.Image  # reduced to what the analyser needs
    extras: dict[str, object] = field(default_factory=dict)


@dataclass
class Analysis:
    """Everything stored for one content: its vectors and cached features."""

    fingerprint: str
    vectors: list[VectorRow]
    features: dict[str, bytes] = field(default_factory=dict)


class Analyser:
    """Full-image vectors only; region matching extends this with region vectors and
    local features."""

    kinds: tuple[str, ...] = ("full",)

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    @property
    def load_side(self) -> int:
        """The longest side the loader must decode to (JPEGs decode faster when smaller)."""
        return self.encoder.input_size

    def prepare(self, fingerprint: str, loaded: LoadedImage) -> Prepared:
        return Prepared(fingerprint, loaded.width, loaded.height, loaded.image)

    def embed(self, batch: Sequence[Prepared]) -> list[Analysis]:
        vectors = self.encoder.embed_images([p.image for p in batch])
        return [
            Analysis(p.fingerprint, [VectorRow(p.fingerprint, "full", 0, None, v)])
            for p, v in zip(batch, vectors, strict=True)
        ]
