"""Where CLIP weights come from: an explicit local file; open_clip's Hugging Face cache;
a download (with progress and timeouts, so an offline machine fails fast rather than
hanging) — only when the user asked for this model (``allow_download``): the built-in
default on a fresh data dir makes no network call, not even a DNS lookup. When none
works, :class:`EncoderUnavailable` says so plainly.

Runs on whichever thread loads the encoder (never the GUI thread: a download blocks).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from desktop_app.engine.bundled import bundled_clip_weights
from desktop_app.engine.encoders.onnx_cache import file_identity
from desktop_app.engine.errors import DownloadCancelled, EncoderUnavailable, UnknownModel

log = logging.getLogger(__name__)

__all__ = [
    "DownloadProgress",
    "cached_weights",
    "describe_load_error",
    "file_identity",
    "hub_files",
    "is_local_weights",
    "parse_clip_spec",
    "resolve_weights",
]

DOWNLOAD_TIMEOUT_S = 10.0  # per network request, not for the whole file
DownloadProgress = Callable[[int, int, str], None]  # (done_bytes, total_bytes, description)


def parse_clip_spec(spec: str) -> tuple[str, str]:
    """``ViT-B-32:laion2b_s34b_b79k`` -> ("ViT-B-32", "laion2b_s34b_b79k")."""
    arch, sep, pretrained = spec.partition(":")
    if not sep or not arch or not pretrained:
        raise UnknownModel(
            f"unknown model {spec!r}: use efficientnet-lite0, ARCH:PRETRAINED "
            "(e.g. ViT-B-32:laion2b_s34b_b79k) or ARCH:/path/to/weights"
        )
    return arch, pretrained


def is_local_weights(pretrained: str) -> bool:
    return (
        "/" in pretrained
        or "\\" in pretrained
        or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )


def resolve_weights(
    arch: str,
    pretrained: str,
    progress: DownloadProgress | None = None,
    allow_download: bool = True,
) -> Path:
    """The local path of the weights, downloading them when allowed and possible."""
    if is_local_weights(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise EncoderUnavailable(f"CLIP weights file not found: {path}")
        return path
    bundled = bundled_clip_weights(arch, pretrained)  # an offline installer's own copy
    if bundled is not None:
        return bundled
    repo_id, candidates = hub_files(arch, pretrained)
    cached = _from_cache(repo_id, candidates)
    if cached is not None:
        return cached
    if not allow_download:
        raise EncoderUnavailable(
            f"CLIP weights for {arch}:{pretrained} are not on this machine (nothing was "
            "downloaded: you did not ask for this model). Choose it in Settings or pass "
            f"--model {arch}:{pretrained} to download it"
        )
    return _download(repo_id, candidates, progress)


def hub_files(arch: str, pretrained: str) -> tuple[str, list[str]]:
    """The Hugging Face repository of open_clip's ``arch:pretrained`` weights and the file
    names they may have there (safetensors first)."""
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = ", ".join(oc_pretrained.list_pretrained_tags_by_model(arch)) or "none"
        raise EncoderUnavailable(f"open_clip knows no weights {pretrained!r} for {arch} ({tags})")
    hub = cfg.get("hf_hub", "")
    if not hub:
        raise EncoderUnavailable(
            f"{arch}:{pretrained} is only distributed by URL; download it "
            "and pass ARCH:/path/to/file"
        )
    # 'org/name/' means open_clip's default file name; 'org/name/file.pt' names one.
    repo_id, filename = os.path.split(hub)
    filename = filename or "open_clip_pytorch_model.bin"
    return repo_id, [*oc_pretrained._get_safe_alternatives(filename), filename]


def cached_weights(arch: str, pretrained: str) -> Path | None:
    """The weights' local path when they are on this machine (a local file, weights an
    installer bundled, or open_clip's Hugging Face cache), else None. Never touches the
    network."""
    if is_local_weights(pretrained):
        path = Path(pretrained).expanduser()
        return path if path.is_file() else None
    bundled = bundled_clip_weights(arch, pretrained)
    if bundled is not None:
        return bundled
    try:
        repo_id, candidates = hub_files(arch, pretrained)
    except EncoderUnavailable:
        return None
    return _from_cache(repo_id, candidates)


def _from_cache(repo_id: str, filenames: Sequence[str]) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection within ``timeout``. The hub client
    retries with back-off for most of a minute when offline; asking first keeps an
    offline start fast."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _download(repo_id: str, filenames: Sequence[str], progress: DownloadProgress | None) -> Path:
    from huggingface_hub import hf_hub_download

    if not hub_reachable():
        raise EncoderUnavailable(
            f"CLIP weights for {repo_id} are not on this machine and the model hub cannot be "
            "reached (offline?). Connect to the internet once, or pass a local weights file "
            "as ARCH:/path/to/weights."
        )
    tqdm_class = _progress_tqdm(progress) if progress else None
    errors = []
    for name in filenames:
        try:
            got = hf_hub_download(
                repo_id, name, etag_timeout=DOWNLOAD_TIMEOUT_S, tqdm_class=tqdm_class
            )
            return Path(got)
        except DownloadCancelled:
            raise  # the user said stop: no next name
        except Exception as exc:  # network, 404, auth: try the next name, report all
            log.warning("downloading %s from %s failed", name, repo_id, exc_info=True)
            errors.append(f"{name}: {_first_line(exc)}")
    raise EncoderUnavailable(
        f"CLIP weights for {repo_id} are not on this machine and could not be downloaded "
        f"({'; '.join(errors)}). Connect to the internet once, or pass a local weights "
        "file as ARCH:/path/to/weights."
    )


def describe_load_error(exc: BaseException) -> str:
    """Why a weights file did not load, in words that suggest only safe fixes.

    PyTorch refuses a checkpoint that holds Python objects besides tensors (loading them
    can run any code) with advice to switch that protection off; this app never does,
    so the advice is replaced, not passed on."""
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc):
        return (
            "the file holds Python objects besides the weights, and loading those could "
            "run code, so it is refused. Use the model's published weights file "
            "(.safetensors, or open_clip's .bin / .pt)"
        )
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    return _first_line(exc)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The exception's type and the first line of its message, shortened: hub and
    PyTorch messages run to pages (every missing key of a mismatched checkpoint)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def cancellable(progress: DownloadProgress | None, cancel: threading.Event) -> DownloadProgress:
    """``progress`` that raises :class:`DownloadCancelled` once ``cancel`` is set: the
    download stops at its next chunk, on whichever thread runs it, and the caller falls
    back to the offline encoder with the reason."""

    def report(done: int, total: int, description: str) -> None:
        if cancel.is_set():
            raise DownloadCancelled("the download of the CLIP weights was cancelled")
        if progress is not None:
            progress(done, total, description)

    return report


def _progress_tqdm(progress: DownloadProgress) -> Any:
    from tqdm.auto import tqdm

    class ProgressTqdm(tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            out: bool | None = super().update(n)
            progress(int(self.n), int(self.total or 0), str(self.desc or "download"))
            return out

    return ProgressTqdm
