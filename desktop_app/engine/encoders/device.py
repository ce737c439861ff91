"""Choosing the compute device and its precision: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)


def pick_device(preference: str = "auto") -> torch.device:
    """The device to run on; an unavailable explicit choice falls back with a warning."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if preference in ("gpu", "cuda") and cuda:
        return torch.device("cuda")
    if preference in ("gpu", "mps") and mps:
        return torch.device("mps")
    if preference == "cpu":
        return torch.device("cpu")
    if preference not in ("auto", "gpu", "cuda", "mps"):
        log.warning("unknown device %r, choosing automatically", preference)
    elif preference != "auto":
        log.warning("device %r is not available here; choosing automatically", preference)
    if cuda:
        return torch.device("cuda")
    if mps:
        return torch.device("mps")
    return torch.device("cpu")


def default_batch_size(device: torch.device) -> int:
    """Large enough to keep a GPU busy, small enough that a CPU batch stays short
    (the indexer checks for cancel between batches)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return 128 if free > 6 * 2**30 else 64
    if device.type == "mps":
        return 32
    return 16


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 on GPUs; full precision on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """``inference_mode`` plus mixed precision on GPUs."""
    dtype = autocast_dtype(device)
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield
