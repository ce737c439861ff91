"""The CLIP path, exercised for real with randomly initialised weights saved to a
temporary checkpoint and loaded through the local-file path (CLIP weights cannot be
downloaded here). Also: the plain fallback to the offline encoder when weights are
neither local, cached nor downloadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop_app.engine.encoders import load_encoder, load_with_fallback
from desktop_app.engine.errors import EncoderUnavailable, UnknownModel
from desktop_app.engine.library import Library

from .conftest import PHOTOS, run_index

pytestmark = pytest.mark.slow  # torch and open_clip, a real (randomly initialised) ViT

ARCH = "ViT-S-32"  # the smallest ViT open_clip defines; same code path as ViT-B-32


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(ARCH, pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "random-vit-s-32.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


def test_local_checkpoint_loads_and_embeds(clip_checkpoint: Path) -> None:
    from PIL import Image

    enc = load_encoder(f"{ARCH}:{clip_checkpoint}", device="cpu", batch_size=4)
    assert enc.id.startswith(f"{ARCH}:file-") and enc.has_text and enc.device == "cpu"
    images = [Image.open(p) for p in PHOTOS[:5]]
    vectors = enc.embed_in_batches(images)
    assert vectors.shape == (5, enc.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    text = enc.embed_text(["a red dress", "a pair of shoes"])
    assert text.shape == (2, enc.dim)
    assert np.allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-4)
    # the same weights file gives the same id (it keys the index)
    assert load_encoder(f"{ARCH}:{clip_checkpoint}", device="cpu").id == enc.id


def test_library_with_clip_indexes_and_searches_by_text(
    clip_checkpoint: Path, photos: Path
) -> None:
    with Library.open(model=f"{ARCH}:{clip_checkpoint}") as lib:
        s = run_index(lib, [photos])
        assert s.embedded == 40
        first = sorted(photos.iterdir())[0]
        assert lib.search_image(first, top_k=1)[0].path == str(first)
        assert len(lib.search_text("a red dress", top_k=5)) == 5
        assert lib.status().encoder.startswith(f"{ARCH}:file-")


def test_missing_weights_file_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderUnavailable, match="not found"):
        load_encoder(f"{ARCH}:{tmp_path / 'nope.pt'}", device="cpu")


def test_unknown_model_names() -> None:
    with pytest.raises(UnknownModel):
        load_encoder("resnet-9000", device="cpu")
    with pytest.raises(UnknownModel):
        load_encoder("NoSuchArch:whatever", device="cpu")


def test_offline_without_cached_weights_falls_back(offline_hub: None) -> None:
    got = load_with_fallback("ViT-B-32:laion2b_s34b_b79k", device="cpu")
    assert got.encoder.id == "efficientnet-lite0"
    assert got.warning is not None
    assert "cannot be reached" in got.warning and "efficientnet-lite0" in got.warning


def test_clip_library_takes_region_vectors_from_the_region_encoder(
    clip_checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    """With a CLIP model, region vectors, windows and the region-space full vectors come
    from EfficientNet-Lite0 (one pass per image, not one per region); a crop of a photo
    and find-similar both still find the photo."""
    from PIL import Image

    from desktop_app.engine.analysis import REGION_FULL

    with Library.open(model=f"{ARCH}:{clip_checkpoint}") as lib:
        run_index(lib, [photos])
        enc = lib.encoder
        assert enc.region_encoder is not enc and enc.region_encoder.id == "efficientnet-lite0"
        counts = lib.status().vectors
        assert counts["full"] == 40 and counts[REGION_FULL] == 40 and counts["region"] == 360
        region_rows = lib.catalog.vectors(enc.id, "region")
        assert {len(r.vector) for r in region_rows} == {enc.region_encoder.dim}
        source = sorted(photos.iterdir())[3]
        im = Image.open(source).convert("RGB")
        w, h = im.size
        im.crop((w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)).save(tmp_path / "crop.jpg")
        assert lib.search_image(tmp_path / "crop.jpg", top_k=3)[0].path == str(source)
        assert lib.search_similar(source, top_k=1)[0].path == str(source)


class _NotATensor:
    """A pickled object that is not a tensor: what a checkpoint saved with a training
    script's own classes, or a booby-trapped one, holds."""


def test_checkpoint_with_python_objects_is_refused_without_unsafe_advice(
    tmp_path: Path,
) -> None:
    import torch

    path = tmp_path / "objects.pt"
    torch.save({"state": _NotATensor()}, path)
    with pytest.raises(EncoderUnavailable) as info:
        load_encoder(f"{ARCH}:{path}", device="cpu")
    message = str(info.value)
    assert "could run code" in message and str(path) in message
    assert "weights_only" not in message and "trust" not in message


def test_damaged_checkpoints_say_what_is_wrong(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(EncoderUnavailable, match="empty or cut short"):
        load_encoder(f"{ARCH}:{empty}", device="cpu")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint " * 20)
    with pytest.raises(EncoderUnavailable, match=r"cannot load .* as ViT-S-32 weights: \w+"):
        load_encoder(f"{ARCH}:{garbage}", device="cpu")


@pytest.mark.parametrize("variant", ["tok", "avg", "tokens too", "no projection"])
def test_exported_image_tower_computes_what_open_clip_does(variant: str) -> None:
    """The image tower (the PyTorch path's and the export's) runs the last block for the
    class token alone when the embedding is that token, and open_clip's own
    ``encode_image`` otherwise (a tower that returns its tokens too, as CoCa's does):
    the same vectors either way."""
    import open_clip
    import torch

    from desktop_app.engine.encoders.clip import _image_tower

    torch.manual_seed(1)
    model = open_clip.create_model(ARCH, pretrained=None).eval()
    if variant == "avg":
        model.visual.pool_type = "avg"
    elif variant == "tokens too":
        model.visual.output_tokens = True
    elif variant == "no projection":
        model.visual.proj = None
    visual = _image_tower(model)
    assert visual.class_token_only == (variant in ("tok", "no projection"))
    images = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        want, got = model.encode_image(images), visual(images)
    if isinstance(want, tuple):  # (pooled, tokens)
        want = want[0]
    assert isinstance(got, torch.Tensor)
    assert torch.allclose(want, got, atol=1e-5), (want - got).abs().max()
