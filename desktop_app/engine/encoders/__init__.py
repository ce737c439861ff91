"""Encoders by name: the offline ``efficientnet-lite0``, CLIP ``ARCH:PRETRAINED``, or
``histogram`` (colour layout, no torch; the fast test tier).

torch and open_clip are imported only when an encoder needs them: never for commands
without inference (``status``, a re-index with nothing new), and on a machine without a
GPU not even for inference once the ONNX exports are cached. Weights are downloaded
only with ``allow_download`` (a model the user named); never for the built-in default.
Threads: build on a worker thread (it is slow), never on the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app.engine.encoders.base import Encoder, l2_normalise
from desktop_app.engine.errors import EncoderUnavailable
from desktop_app.engine.settings import HISTOGRAM_MODEL, OFFLINE_MODEL

log = logging.getLogger(__name__)

# progress(done_bytes, total_bytes, description) while weights download
DownloadProgress = Callable[[int, int, str], None]

__all__ = ["Encoder", "LoadedEncoder", "l2_normalise", "load_encoder", "load_with_fallback"]


def load_encoder(
    spec: str,
    device: str = "auto",
    batch_size: int = 0,
    progress: DownloadProgress | None = None,
    allow_download: bool = True,
    *,
    runtime: str | None = None,
    cache_dir: Path | None = None,
) -> Encoder:
    """Build the encoder ``spec`` names; slow (loads weights): call it off any UI thread.

    ``runtime`` (``torch``, ``onnx``, ``onnx-int8``; default: by device, see
    ``encoders.runtime``) and ``cache_dir`` (the ONNX exports; default
    ``AppDirs.cache / "onnx"``) choose how the model runs."""
    if spec == HISTOGRAM_MODEL:  # needs no torch: keep it unimported
        from desktop_app.engine.encoders.histogram import HistogramEncoder

        return HistogramEncoder(batch_size)
    from desktop_app.engine.bundled import torch_installed
    from desktop_app.engine.encoders.runtime import cpu_for_certain

    if cpu_for_certain(device) or not torch_installed():
        torch_device: Any = "cpu"  # the ONNX path then never imports torch
    else:
        from desktop_app.engine.encoders.device import pick_device

        torch_device = pick_device(device)
    if spec == OFFLINE_MODEL:
        from desktop_app.engine.encoders.efficientnet import EfficientNetLite0

        return EfficientNetLite0(torch_device, batch_size, runtime=runtime, cache_dir=cache_dir)
    from desktop_app.engine.encoders.clip import ClipEncoder

    return ClipEncoder(
        spec,
        torch_device,
        batch_size,
        progress,
        allow_download,
        runtime=runtime,
        cache_dir=cache_dir,
    )


@dataclass
class LoadedEncoder:
    encoder: Encoder
    requested: str
    warning: str | None  # set when we fell back to the offline encoder


def load_with_fallback(
    spec: str,
    device: str = "auto",
    batch_size: int = 0,
    progress: DownloadProgress | None = None,
    allow_download: bool = True,
) -> LoadedEncoder:
    """``spec`` when it can be loaded, else the offline encoder with a plain warning.
    Without ``allow_download`` only weights already on this machine are used."""
    try:
        encoder = load_encoder(spec, device, batch_size, progress, allow_download)
        return LoadedEncoder(encoder, spec, None)
    except EncoderUnavailable as exc:
        if spec == OFFLINE_MODEL:
            raise
        warning = f"{exc} — using the offline encoder {OFFLINE_MODEL} instead."
        log.warning("%s", warning, exc_info=exc)  # the log keeps the cause's traceback
        return LoadedEncoder(load_encoder(OFFLINE_MODEL, device, batch_size), spec, warning)
