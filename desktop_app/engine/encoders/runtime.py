"""Which inference runtime an encoder uses, and the guard on int8 models.

On a CPU the default is ONNX Runtime (``onnx``: fp32; ``onnx-int8``: dynamic int8
quantisation of the matrix multiplies, for transformers); on a GPU it is PyTorch with
mixed precision. ``DESKTOP_APP_RUNTIME=torch|onnx|onnx-int8`` overrides the choice
(benchmarks compare the paths with it). Figures behind the defaults: README,
*Performance*.

Threads: :class:`GuardedInt8` may be called from the indexing thread and search threads
at once; its one-time check holds a lock.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np

from desktop_app.engine.encoders.onnx_cache import OnnxModel

log = logging.getLogger(__name__)

RUNTIME_ENV = "DESKTOP_APP_RUNTIME"
TORCH, ONNX, ONNX_INT8 = "torch", "onnx", "onnx-int8"
RUNTIMES = (TORCH, ONNX, ONNX_INT8)
INT8_MIN_COSINE = 0.98  # the least cosine to fp32 an int8 model must keep on real images
INT8_CHECK_IMAGES = 16  # real images the int8 model is checked on before it is trusted


def pick_runtime(device_type: str, cpu_default: str, requested: str | None = None) -> str:
    """The runtime for an encoder on ``device_type``: ``requested``, else the
    environment's choice, else PyTorch on GPUs and ``cpu_default`` on the CPU."""
    wanted = requested or os.environ.get(RUNTIME_ENV, "").strip().lower() or "auto"
    if wanted not in (*RUNTIMES, "auto"):
        log.warning("unknown runtime %r (use %s); choosing automatically", wanted, RUNTIMES)
        wanted = "auto"
    if device_type != "cpu":
        if wanted not in (TORCH, "auto"):
            log.info("runtime %s is for the CPU; using PyTorch on %s", wanted, device_type)
        return TORCH
    return cpu_default if wanted == "auto" else wanted


def cpu_for_certain(device: str) -> bool:
    """Whether the device is the CPU, known without importing torch: asked for, or no
    GPU driver on the machine (CUDA's and ROCm's device nodes; Apple's MPS on macOS)."""
    if device == "cpu":
        return True
    if device != "auto" or sys.platform == "darwin":
        return False
    gpu_nodes = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
    return not any(os.path.exists(p) for p in gpu_nodes)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(axis=1) / np.maximum(na, 1e-12), np.float32)


class GuardedInt8:
    """An int8 model that proves itself: on its first real images it runs beside the fp32
    model, and if any embedding's cosine to fp32 falls below ``INT8_MIN_COSINE`` the fp32
    model replaces it, for good (the verdict is saved next to the int8 file). Random or
    synthetic calibration images say little about real weights on real photos; the user's
    own first images do."""

    def __init__(self, int8: OnnxModel, fp32_path: Path, threads: int | None = None) -> None:
        self._model = int8
        self._fp32_path = fp32_path
        self._threads = threads
        self._verdict_path = int8.path.with_suffix(".verdict.json")
        self._lock = threading.Lock()
        self._checked = 0
        self._worst = 1.0
        verdict = self._read_verdict()
        self._pending = verdict is None
        if verdict is False:
            log.info("int8 model was less accurate than fp32 here before; using fp32")
            self._model = OnnxModel(fp32_path, threads)

    @property
    def precision(self) -> str:
        return "int8" if self._model.path != self._fp32_path else "fp32"

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        if not self._pending:
            return self._model.run(*inputs)
        with self._lock:
            return self._check(inputs)

    def _check(self, inputs: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """Runs under the lock: another thread may have settled the verdict meanwhile."""
        if not self._pending:
            return self._model.run(*inputs)
        reference = OnnxModel(self._fp32_path, self._threads)
        want = reference.run(*inputs)
        got = self._model.run(*inputs)
        worst = float(cosines(want[0], got[0]).min()) if len(want[0]) else 1.0
        self._worst = min(self._worst, worst)
        self._checked += len(want[0])
        if self._worst < INT8_MIN_COSINE:
            log.warning(
                "int8 embeddings reach only cosine %.4f to fp32 on real images; "
                "using the fp32 model",
                self._worst,
            )
            self._model = reference
            self._settle(False)
        elif self._checked >= INT8_CHECK_IMAGES:
            log.info("int8 model kept: worst cosine to fp32 %.4f", self._worst)
            self._settle(True)
        return want

    def _settle(self, accepted: bool) -> None:
        self._pending = False
        try:
            self._verdict_path.write_text(
                json.dumps({"accepted": accepted, "worst_cosine": self._worst})
            )
        except OSError as exc:  # a read-only cache only costs the check next time
            log.warning("cannot save the int8 verdict: %s", exc)

    def _read_verdict(self) -> bool | None:
        try:
            return bool(json.loads(self._verdict_path.read_text())["accepted"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
