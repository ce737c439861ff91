"""A fast stand-in for the real encoders, for tests that exercise storage and faults
rather than similarity quality: an 8×8 colour thumbnail as the vector (plus a constant,
so a black image is not a zero vector). Deterministic, no torch, milliseconds per image.

``install(monkeypatch)`` makes every Library load it whatever model is named; the
subprocess tests run ``python -m tests.fake_encoder ARGS...`` which installs it and
runs the real command line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from desktop_app.engine.encoders import LoadedEncoder
from desktop_app.engine.encoders.base import Encoder, l2_normalise

MODEL = "fake-colour"


class FakeEncoder(Encoder):
    id = MODEL
    label = "fake colour encoder"
    dim = 8 * 8 * 3 + 1
    device = "cpu"
    batch_size = 8
    input_size = 64

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = []
        for im in images:
            small = np.asarray(im.convert("RGB").resize((8, 8), Image.Resampling.BOX), np.float32)
            rows.append(np.r_[small.ravel() / 255.0, 1.0])
        return l2_normalise(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)


def _load(spec: str, *args: Any, **kwargs: Any) -> LoadedEncoder:
    return LoadedEncoder(FakeEncoder(), spec, None)


def install(monkeypatch: Any = None) -> None:
    import desktop_app.engine.library as library

    if monkeypatch is not None:
        monkeypatch.setattr(library, "load_with_fallback", _load)
    else:
        library.load_with_fallback = _load  # type: ignore[assignment]


if __name__ == "__main__":
    install()
    from desktop_app.cli import main

    sys.exit(main(sys.argv[1:]))
