"""The ONNX Runtime CPU path: a torch module exported once with ``torch.onnx.export``,
cached on disk, and run by an ONNX Runtime session.

Why: on a CPU, ONNX Runtime runs the same graphs markedly faster than eager PyTorch (fused
attention and layer norms, no Python per layer; figures in the README's *Performance*
section), and it is already installed (chromadb depends on it).

The cache (``AppDirs.cache / "onnx"``): one ``.onnx`` file per model part, named by a key
of the weights' identity, the part, the precision, the export format and the torch, onnx
and onnxruntime versions, so an upgrade of any of them or new weights make a new export
rather than reuse a stale one (older files of the same part are deleted). A sidecar JSON
holds the file's size and a hash of its head and tail; a file that does not match it, or
that ONNX Runtime cannot load, is damaged and exported again. Files are written to a
temporary name and renamed, so a crash never leaves a half-written model under the real
name.

Exports an installer made at build time (``installer/export_onnx.py``) are found before
the cache: the frozen CPU app has no torch to export with. They are matched by what
defines the graph (part, weights, precision, export format, opset), not by the torch
version that made them, and never modified or deleted (they are read-only files of the
installed package).

Threads: an :class:`OnnxModel` is built on whichever thread loads the encoder and may be
run from several threads at once (``InferenceSession.run`` is thread-safe).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # bump when the exported graphs change (2: CLIP's last block, class token only)
OPSET = 17


class ExportFailed(RuntimeError):
    """The model could not be exported or loaded by ONNX Runtime: use PyTorch instead."""


def physical_cores() -> int:
    """Cores without SMT siblings: ONNX Runtime's intra-op threads scale with these,
    and a thread per SMT sibling only adds contention."""
    try:
        cores: set[tuple[str, str]] = set()
        base = Path("/sys/devices/system/cpu")
        for topo in base.glob("cpu[0-9]*/topology"):
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
            cores.add((package, core))
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        if cores:
            return max(1, min(len(cores), usable or len(cores)))
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2 if (os.cpu_count() or 1) > 2 else os.cpu_count() or 1)


def runtime_versions() -> str:
    """The versions an export depends on, read without importing torch (half a second
    and half a gigabyte that a cached start never needs)."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("torch", "onnx", "onnxruntime"):
        try:
            parts.append(f"{name}-{version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name}-none")
    return "_".join(parts)


def file_identity(path: Path, digest_size: int = 8) -> str:
    """A short, stable id for a weights file: its size plus a hash of its head and tail,
    so the same weights keep their index when the file moves."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=digest_size)
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read())
    return h.hexdigest()


def file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first and last MiB (``file_identity``, longer): cheap on a
    350 MB model, and it catches truncation and overwritten heads or tails (what a crash
    or a bad copy does)."""
    return file_identity(path, digest_size=16)


@dataclass(frozen=True)
class ExportSpec:
    """One model part to export: ``build`` makes the torch module (called only when an
    export is needed, so a cached model never loads torch weights)."""

    part: str  # e.g. "ViT-B-32-visual"
    weights_id: str  # identity of the weights (file hash or pretrained tag)
    example: Callable[[], Sequence[Any]] = tuple  # example inputs for tracing
    input_names: Sequence[str] = ()
    output_names: Sequence[str] = ()
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    int8: bool = False  # dynamic int8 quantisation of the MatMul/Gemm weights

    @property
    def key(self) -> str:
        raw = "|".join(
            (self.part, self.weights_id, str(EXPORT_FORMAT), str(OPSET), runtime_versions())
        )
        return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()

    @property
    def stem(self) -> str:
        slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", self.part).strip("-.")[:60]
        return f"{slug}-{'int8' if self.int8 else 'fp32'}"

    def path(self, cache: Path) -> Path:
        return cache / f"{self.stem}-{self.key}.onnx"

    @property
    def identity(self) -> dict[str, object]:
        """What defines the exported graph, without the versions of the tools that made
        it: how a bundled export is looked up (``BUNDLE_INDEX``)."""
        return {
            "part": self.part,
            "weights_id": self.weights_id,
            "precision": "int8" if self.int8 else "fp32",
            "format": EXPORT_FORMAT,
            "opset": OPSET,
        }


BUNDLE_INDEX = "index.json"  # in a bundled exports folder: [{**identity, "file": name}]


def _bundle_index(folder: Path | None) -> tuple[Path, list[dict[str, Any]]] | None:
    if folder is None:
        from desktop_app.engine.bundled import bundled_onnx_dir

        folder = bundled_onnx_dir()
        if folder is None:
            return None
    try:
        entries = json.loads((folder / BUNDLE_INDEX).read_text())
    except (OSError, ValueError) as exc:
        log.warning("bundled ONNX index in %s is unreadable: %s", folder, exc)
        return None
    if not isinstance(entries, list):
        return None
    return folder, [e for e in entries if isinstance(e, dict)]


def bundled_export(spec: ExportSpec, folder: Path | None = None) -> Path | None:
    """The export an installer shipped for ``spec`` (``folder``: default, the frozen
    app's ``onnx-models``), or None."""
    index = _bundle_index(folder)
    if index is None:
        return None
    wanted = spec.identity
    for entry in index[1]:
        if all(entry.get(k) == v for k, v in wanted.items()):
            path = index[0] / str(entry.get("file", ""))
            if path.is_file():
                return path
    return None


def bundled_weights_id(part: str, folder: Path | None = None) -> str | None:
    """The weights id of the export an installer shipped for ``part``: the CPU installer
    ships the export and not the weights file it was made from, which the installer
    pinned, so the export's record is the weights' identity."""
    index = _bundle_index(folder)
    if index is None:
        return None
    ids = {str(e.get("weights_id")) for e in index[1] if e.get("part") == part}
    return ids.pop() if len(ids) == 1 else None


def bundle_exports(cache: Path, folder: Path) -> list[dict[str, object]]:
    """Copy every export in ``cache`` (with its ``.meta.json``) into ``folder`` and write
    the index :func:`bundled_export` reads: the installer's build step."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    for model in sorted(cache.glob("*.onnx")):
        if not _sidecar_matches(model):
            continue
        identity = json.loads(_sidecar(model).read_text()).get("identity")
        if not isinstance(identity, dict):
            continue
        shutil.copy2(model, folder / model.name)
        meta = model.with_suffix(".meta.json")
        if meta.is_file():
            shutil.copy2(meta, folder / meta.name)
        entries.append({**identity, "file": model.name})
    (folder / BUNDLE_INDEX).write_text(json.dumps(entries, indent=1))
    return entries


class OnnxModel:
    """A loaded ONNX Runtime session with its CPU thread settings."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or physical_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning (ONNX Runtime spins by default): a
        # search embeds its windows while keypoints, colour checks and verification run
        # on the other core, and a spinning thread took that core. Search by a 3 MP photo
        # at 10,000 images used 1.10 s of CPU with spinning and 0.94 s without, and all
        # stages took 545 → 483 ms p50 (bench_search --engine, quiet machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        feed = dict(zip(self.input_names, inputs, strict=True))
        return list(self.session.run(None, feed))


def load_or_export(
    spec: ExportSpec,
    build: Callable[[], Any],
    cache: Path,
    threads: int | None = None,
) -> OnnxModel:
    """The cached fp32 model for ``spec`` as a session, exported first when missing,
    stale or damaged. ``build`` makes the torch module, only when an export is needed.
    Raises :class:`ExportFailed` with the reason when that fails."""
    return _open(spec, lambda dest: _export(spec, build, dest), cache, threads)


def ensure_export(spec: ExportSpec, build: Callable[[], Any], cache: Path) -> Path:
    """Like :func:`load_or_export` without opening a session (a model that is only the
    source of another, or opened on first use): its path."""
    return _ensure(spec, lambda dest: _export(spec, build, dest), cache)


def load_or_quantise(
    spec: ExportSpec, source: Path, cache: Path, threads: int | None = None
) -> OnnxModel:
    """The cached int8 (dynamic quantisation) version of the fp32 model at ``source``."""
    return _open(spec, lambda dest: _quantise(source, dest), cache, threads)


def _open(
    spec: ExportSpec, make: Callable[[Path], None], cache: Path, threads: int | None
) -> OnnxModel:
    path = _ensure(spec, make, cache)
    if path.parent != cache:  # a bundled export: never replaced
        try:
            return OnnxModel(path, threads)
        except Exception as exc:
            message = f"{spec.part}: the bundled export {path} is unusable: {exc}"
            raise ExportFailed(message) from exc
    try:
        return OnnxModel(path, threads)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        log.warning("cached ONNX model %s is unusable (%s); making it again", path, exc)
    _discard(path)
    path = _ensure(spec, make, cache)
    try:
        return OnnxModel(path, threads)
    except Exception as exc:
        raise ExportFailed(f"{spec.part}: ONNX Runtime cannot load the export: {exc}") from exc


def _ensure(spec: ExportSpec, make: Callable[[Path], None], cache: Path) -> Path:
    """The path of a whole, current model for ``spec``: the cached one when its sidecar
    vouches for it, else made anew. An installer's bundled export comes first."""
    bundled = bundled_export(spec)
    if bundled is not None:
        return bundled
    cache.mkdir(parents=True, exist_ok=True)
    path = spec.path(cache)
    if _sidecar_matches(path):
        return path
    if path.exists():
        log.warning("cached ONNX model %s is damaged; making it again", path)
    _remove_stale(cache, spec)
    try:
        with tempfile.TemporaryDirectory(dir=cache, prefix=".export-") as tmp:
            made = Path(tmp) / "model.onnx"
            make(made)
            os.replace(made, path)
        _sidecar(path).write_text(
            json.dumps(
                {
                    "part": spec.part,
                    "fingerprint": file_fingerprint(path),
                    "identity": spec.identity,
                }
            )
        )
        return path
    except ExportFailed:
        _discard(path)
        raise
    except Exception as exc:
        _discard(path)
        raise ExportFailed(f"{spec.part}: {type(exc).__name__}: {exc}") from exc


CACHE_ENV = "DESKTOP_APP_ONNX_CACHE"


def default_cache() -> Path:
    """``AppDirs.cache / "onnx"`` (moves with ``DESKTOP_APP_HOME``), or
    ``$DESKTOP_APP_ONNX_CACHE`` (the test suite shares one export across its tests)."""
    from desktop_app.engine.paths import resolve_dirs

    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else resolve_dirs().cache / "onnx"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _sidecar_matches(path: Path) -> bool:
    try:
        meta = json.loads(_sidecar(path).read_text())
        return bool(meta.get("fingerprint") == file_fingerprint(path))
    except (OSError, ValueError):
        return False


def _remove_stale(cache: Path, spec: ExportSpec) -> None:
    """Older exports of the same part and precision (other weights or versions)."""
    for old in cache.glob(f"{spec.stem}-*"):
        _discard(old)


def _discard(path: Path) -> None:
    companions = (".json", ".verdict.json", ".meta.json")
    for p in (path, *(path.with_suffix(c) for c in companions)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _export(spec: ExportSpec, build: Callable[[], Any], dest: Path) -> None:
    from desktop_app.engine.bundled import NO_TORCH, torch_installed

    if not torch_installed():
        raise ExportFailed(f"{spec.part} has no bundled ONNX export, and {NO_TORCH}")
    import torch

    log.info("exporting %s to ONNX (once; cached)", spec.part)
    try:
        module = build()
        # Grad mode on: under no_grad, nn.MultiheadAttention takes a fused fast path
        # whose operator has no ONNX form.
        # The exporter's deprecation and tracer warnings concern the exporter, not the user.
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(spec.example()),
                str(dest),
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                dynamic_axes=spec.dynamic_axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise ExportFailed(f"torch.onnx.export of {spec.part} failed: {exc}") from exc


def _quantise(src: Path, dest: Path) -> None:
    log.info("quantising %s to int8 (once; cached)", src.name)
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # needs the onnx package
        raise ExportFailed(f"int8 quantisation needs the onnx package: {exc}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                str(src),
                str(dest),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
    except Exception as exc:
        raise ExportFailed(f"int8 quantisation failed: {exc}") from exc
