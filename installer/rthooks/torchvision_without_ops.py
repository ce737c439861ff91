"""PyInstaller runtime hook: let torchvision's Python side load when its compiled ops
were left out of the bundle.

The CPU build pairs the CPU-only torch wheel with torchvision's wheel from the package
index, whose compiled extension (`_C`: nms, roi_align — detection ops) is linked against
CUDA torch and cannot load with a CPU torch, so the build leaves it out. torchvision's
Python transforms (all that open_clip and the EfficientNet package use) work without it,
except that importing torchvision registers fake kernels for `torchvision::nms` and
`torchvision::qnms`, which needs those operators declared. This declares their schemas
(the same as torchvision's C++ declarations); calling them raises torch's "no kernel"
error, and the app calls neither. Where `_C` is bundled (the GPU build, or a CPU build
from a matching `+cpu` torchvision) this does nothing: `_C` declares them itself.

Runs before any app code, on the main thread.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any


def _declare_torchvision_ops() -> None:
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    # A Library object drops its registrations when collected: keep it for the process.
    sys._desktop_app_torchvision_ops = lib  # type: ignore[attr-defined]


class _BeforeTorchvision(MetaPathFinder):
    """Declares the ops just before torchvision is first imported (not at start-up:
    `desktop-app --help` should not pay for importing torch), then steps aside."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name == "torchvision":
            sys.meta_path.remove(self)
            _declare_torchvision_ops()
        return None


_TV = Path(getattr(sys, "_MEIPASS", "")) / "torchvision"
if _TV.is_dir() and not any(_TV.glob("_C.*")):
    sys.meta_path.insert(0, _BeforeTorchvision())
