"""The command line's stable interface: commands, options and JSON shapes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err


def test_index_search_status_forget(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path, model: str
) -> None:
    data = str(tmp_path / "data")
    (photos / "broken.jpg").write_text("not an image")
    code, out, _ = run_cli(
        capsys, "index", str(photos), "--model", model, "--data-dir", data, "--json"
    )
    assert code == 0
    summary = json.loads(out[-1])
    assert {"seen", "embedded", "reused", "removed", "failed"} <= summary.keys()
    assert summary["seen"] == 41 and summary["embedded"] == 40
    assert summary["failed"][0]["path"] == str(photos / "broken.jpg")

    query = sorted(photos.glob("*.jpg"))[1]
    code, out, _ = run_cli(
        capsys, "search", str(query), "--top-k", "3", "--data-dir", data, "--json"
    )
    assert code == 0
    line = json.loads(out[-1])
    assert line["query"] == str(query)
    assert len(line["results"]) == 3
    top = line["results"][0]
    assert top == {
        "path": str(query),
        "score": pytest.approx(1.0, abs=0.01),
        "match": "full",
        "region": None,
    }

    code, out, _ = run_cli(
        capsys,
        "search",
        "--similar-to",
        str(query),
        "--threshold",
        "0.9999",
        "--data-dir",
        data,
        "--json",
    )
    assert [r["path"] for r in json.loads(out[-1])["results"]] == [str(query)]

    code, out, _ = run_cli(capsys, "status", "--json", "--data-dir", data)
    st = json.loads(out[-1])
    assert (st["files"], st["distinct"], st["failed"]) == (40, 40, 1)
    assert st["encoder"] == model and st["device"] == "cpu"
    assert st["failures"] == [
        {"path": str(photos / "broken.jpg"), "reason": summary["failed"][0]["reason"]}
    ]
    assert st["data_dir"] == data and st["store_bytes"] > 0

    code, out, _ = run_cli(capsys, "forget", str(photos), "--data-dir", data)
    assert code == 0
    code, out, _ = run_cli(capsys, "status", "--json", "--data-dir", data)
    assert json.loads(out[-1])["files"] == 0


def test_text_search_without_text_tower_says_why(
    capsys: pytest.CaptureFixture[str], photos: Path, model: str
) -> None:
    run_cli(capsys, "index", str(photos), "--model", model)
    code, out, err = run_cli(capsys, "search", "--text", "a red dress", "--json")
    assert code == 1
    assert "no text tower" in err
    assert json.loads(out[-1])["results"] == []


def test_search_needs_a_query(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "search")
    assert code == 2 and "IMAGE" in err


def test_module_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "desktop_app", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("index", "search", "status", "forget"):
        assert command in out


def test_console_script_installed() -> None:
    exe = shutil.which("desktop-app") or str(Path(sys.executable).parent / "desktop-app")
    out = subprocess.run(
        [exe, "search", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ("--top-k", "--threshold", "--text", "--similar-to", "--region", "--json"):
        assert option in out
