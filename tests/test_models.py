"""``desktop-app models``: the encoders, whether their weights are here, which is active
and what each has indexed, without ever touching the network."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from desktop_app.cli import main
from desktop_app.engine.catalog import Catalog, VectorRow
from desktop_app.engine.paths import resolve_dirs
from desktop_app.engine.settings import Settings

CLIP = "ViT-B-32:laion2b_s34b_b79k"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network, and an empty Hugging Face cache of our own."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"models touched the network: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def models_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, dict[str, Any]]:
    assert main(["models", "--json", *args]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["machine"]
    return {m["name"]: m for m in out["models"]}


def test_lists_the_offline_encoder_and_clip_models(capsys: pytest.CaptureFixture[str]) -> None:
    models = models_json(capsys)
    offline = models["efficientnet-lite0"]
    assert offline["kind"] == "offline" and offline["cached"] is True
    assert offline["size_bytes"] > 1_000_000 and offline["images_per_s"] > 0
    assert models["histogram"]["kind"] == "offline" and models["histogram"]["cached"] is True
    clip = models[CLIP]
    assert clip["kind"] == "clip" and clip["cached"] is False
    assert clip["active"] is True  # the default setting
    assert clip["size_is_estimate"] is True and clip["size_bytes"] > 100_000_000
    assert clip["images_per_s"] > 0  # the ViT-B-32 geometry was measured
    assert "not on this machine" in clip["note"]
    assert sum(m["kind"] == "clip" for m in models.values()) > 50


def test_cached_weights_and_index_counts(
    capsys: pytest.CaptureFixture[str], offline: Path, tmp_path: Path
) -> None:
    # weights in the Hugging Face cache, laid out as huggingface_hub lays them out
    repo = offline / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"\0" * 1234)
    # a local weights file chosen in the settings, and vectors from two encoders
    weights = tmp_path / "my-clip.pt"
    weights.write_bytes(b"w" * 4096)
    dirs = resolve_dirs(None).ensure()
    Settings(model=f"ViT-B-16:{weights}").save(dirs.settings_path)
    catalog = Catalog(dirs.catalog_path)
    with catalog.transaction() as db:
        for i in range(3):
            row = VectorRow(f"fp{i}", "full", 0, None, np.ones(4, np.float32))
            catalog.put_vectors("efficientnet-lite0", [row], db)
        catalog.put_vectors("RN50:gone-file", [row], db)
    catalog.set_meta("active_model", "efficientnet-lite0")
    catalog.close()

    models = models_json(capsys)
    clip = models[CLIP]
    assert clip["cached"] is True and clip["size_bytes"] == 1234
    assert clip["size_is_estimate"] is False and clip["active"] is False
    assert models["efficientnet-lite0"]["active"] is True
    assert models["efficientnet-lite0"]["indexed"] == 3
    local = models[f"ViT-B-16:{weights}"]
    assert local["kind"] == "clip-file" and local["size_bytes"] == 4096 and local["cached"]
    assert models["RN50:gone-file"]["kind"] == "indexed-only"
    assert models["RN50:gone-file"]["indexed"] == 1

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "* efficientnet-lite0" in table and CLIP in table and "--all" in table
    assert "ViT-L-14:openai" not in table  # not here, not active: only with --all
    assert main(["models", "--all"]) == 0
    assert "ViT-L-14:openai" in capsys.readouterr().out
