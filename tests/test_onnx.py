"""The ONNX Runtime CPU path against the PyTorch path, on real photos: the same
neighbours and embeddings within cosine 0.98; a damaged or stale cached export is made
again; a failed export falls back to PyTorch; an int8 model that strays from fp32 on real
images is replaced by the fp32 one. CLIP runs with randomly initialised weights saved to a
temporary checkpoint (real CLIP weights cannot be downloaded here)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.engine.encoders.runtime import ONNX, ONNX_INT8, TORCH, cosines, pick_runtime

from .conftest import PHOTOS

CLIP_ARCH = "ViT-S-32"  # the smallest ViT open_clip defines; same code path as ViT-B-32


def test_runtime_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DESKTOP_APP_RUNTIME", raising=False)
    assert pick_runtime("cpu", ONNX_INT8) == ONNX_INT8
    assert pick_runtime("cuda", ONNX_INT8) == TORCH  # GPUs keep PyTorch (autocast)
    assert pick_runtime("cpu", ONNX, "torch") == TORCH
    monkeypatch.setenv("DESKTOP_APP_RUNTIME", "onnx")
    assert pick_runtime("cpu", ONNX_INT8) == ONNX
    monkeypatch.setenv("DESKTOP_APP_RUNTIME", "tensorrt")  # unknown: automatic choice
    assert pick_runtime("cpu", ONNX_INT8) == ONNX_INT8


def _photos(n: int = 12) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in PHOTOS[:n]]


def _same_neighbours(a: np.ndarray, b: np.ndarray, top: int = 3) -> None:
    """Each photo's nearest other photos, by both paths' vectors, agree."""
    for sims_a, sims_b in zip(a @ a.T, b @ b.T, strict=True):
        assert list(np.argsort(-sims_a)[:top]) == list(np.argsort(-sims_b)[:top])


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model(CLIP_ARCH, pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "random-vit-s-32.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests that only read the cache (an export takes seconds)."""
    return tmp_path_factory.mktemp("onnx")


@pytest.mark.slow
def test_efficientnet_onnx_matches_torch(onnx_cache: Path) -> None:
    from desktop_app.engine.encoders import load_encoder

    images = _photos()
    torch_enc = load_encoder("efficientnet-lite0", "cpu", runtime="torch")
    onnx_enc = load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=onnx_cache)
    assert "ONNX Runtime" in onnx_enc.describe() and onnx_enc.id == torch_enc.id
    want, got = torch_enc.embed_images(images), onnx_enc.embed_images(images)
    assert cosines(want, got).min() >= 0.98
    _same_neighbours(want, got)
    boxes = [[(0.0, 0.0, 0.5, 0.5), (0.25, 0.25, 0.5, 0.5)]] * len(images)
    for w, g in zip(
        torch_enc.embed_regions(images, boxes),
        onnx_enc.embed_regions(images, boxes),
        strict=True,
    ):
        assert cosines(w, g).min() >= 0.98


@pytest.mark.slow
@pytest.mark.parametrize("runtime", [ONNX, ONNX_INT8])
def test_clip_onnx_matches_torch(clip_checkpoint: Path, onnx_cache: Path, runtime: str) -> None:
    from desktop_app.engine.encoders import load_encoder

    spec = f"{CLIP_ARCH}:{clip_checkpoint}"
    images = _photos()
    torch_enc = load_encoder(spec, "cpu", runtime="torch")
    onnx_enc = load_encoder(spec, "cpu", runtime=runtime, cache_dir=onnx_cache)
    assert onnx_enc.id == torch_enc.id and onnx_enc.dim == torch_enc.dim
    for _ in range(2):  # an int8 model is checked on its first batch: test the next one too
        want, got = torch_enc.embed_images(images), onnx_enc.embed_images(images)
        # fp32 computes the same numbers (the last block's class token alone included)
        assert cosines(want, got).min() >= (0.98 if runtime == ONNX_INT8 else 0.9999)
        _same_neighbours(want, got)
    texts = ["a red dress", "a pair of shoes"]
    assert cosines(torch_enc.embed_text(texts), onnx_enc.embed_text(texts)).min() >= 0.98


@pytest.mark.slow
def test_damaged_or_stale_export_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop_app.engine.encoders import load_encoder, onnx_cache

    cache = tmp_path / "onnx"
    images = _photos(4)
    first = load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=cache)
    want = first.embed_images(images)
    (model,) = cache.glob("*.onnx")
    with model.open("r+b") as fh:  # a bad copy: the head overwritten
        fh.write(b"\0" * 4096)
    again = load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=cache)
    assert "ONNX Runtime" in again.describe()
    assert cosines(want, again.embed_images(images)).min() >= 0.999
    model.write_bytes(model.read_bytes()[:1000])  # truncated
    again = load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=cache)
    assert cosines(want, again.embed_images(images)).min() >= 0.999
    # another onnxruntime (or torch, or onnx) version: a new export replaces the old one
    real = onnx_cache.runtime_versions
    monkeypatch.setattr(onnx_cache, "runtime_versions", lambda: real() + "-next")
    newer = load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=cache)
    (current,) = cache.glob("*.onnx")
    assert current != model and not model.exists()
    assert cosines(want, newer.embed_images(images)).min() >= 0.999


@pytest.mark.slow
def test_failed_export_falls_back_to_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from desktop_app.engine.encoders import load_encoder

    def broken_export(*args: object, **kwargs: object) -> None:
        raise RuntimeError("operator not supported")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with caplog.at_level(logging.WARNING):
        enc = load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=tmp_path)
    assert "ONNX" not in enc.describe()
    assert "operator not supported" in caplog.text and "PyTorch" in caplog.text
    vectors = enc.embed_images(_photos(2))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert not list(tmp_path.glob("*.onnx"))  # nothing half-made left behind


@pytest.mark.slow
def test_int8_that_strays_from_fp32_is_replaced(
    clip_checkpoint: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop_app.engine.encoders import load_encoder, runtime

    spec = f"{CLIP_ARCH}:{clip_checkpoint}"
    for verdict in onnx_cache.glob("*.verdict.json"):
        verdict.unlink()
    monkeypatch.setattr(runtime, "INT8_MIN_COSINE", 1.01)  # no int8 model is this good
    enc = load_encoder(spec, "cpu", runtime=ONNX_INT8, cache_dir=onnx_cache)
    assert "int8" in enc.describe()
    enc.embed_images(_photos(2))
    assert "fp32" in enc.describe()
    # the verdict is kept: the next start uses fp32 without checking again
    monkeypatch.setattr(runtime, "INT8_MIN_COSINE", 0.98)
    assert "fp32" in load_encoder(spec, "cpu", runtime=ONNX_INT8, cache_dir=onnx_cache).describe()
    for verdict in onnx_cache.glob("*.verdict.json"):
        verdict.unlink()


@pytest.mark.slow
def test_numpy_preprocessing_is_open_clips() -> None:
    """The torch-free preprocessing gives open_clip's own tensors, pixel for pixel."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from desktop_app.engine.encoders.clip import numpy_preprocess

    cfg = {
        "size": [224, 224],
        "mode": "RGB",
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
    ours = numpy_preprocess(cfg)
    assert ours is not None
    theirs = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    images = _photos(4) + [Image.new("RGB", (224, 224), "red"), Image.new("RGB", (90, 500))]
    for im in images:
        assert np.abs(ours(im) - theirs(im).numpy()).max() < 1e-5
    assert numpy_preprocess({**cfg, "resize_mode": "squash"}) is None


@pytest.mark.slow
def test_cached_start_imports_no_torch(onnx_cache: Path) -> None:
    """Once exported, the CPU path loads and embeds without importing torch (its import
    alone costs about half a gigabyte of memory and seconds of start-up)."""
    import subprocess
    import sys

    from desktop_app.engine.encoders import load_encoder

    load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=onnx_cache)
    cache = f"Path(r'{onnx_cache}')"
    load = f"load_encoder('efficientnet-lite0', 'cpu', runtime='onnx', cache_dir={cache})"
    script = (
        "import sys; from pathlib import Path; from PIL import Image\n"
        "from desktop_app.engine.encoders import load_encoder\n"
        f"e = {load}\n"
        f"v = e.embed_images([Image.open(r'{PHOTOS[0]}')])\n"
        "print(v.shape, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("(1, 1280) False")
