"""The evaluation command: metric functions against hand-computed values, labels from
folders, and a whole run on the fixture photos sorted into label folders."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from desktop_app.cli import main
from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.evaluation import (
    evaluate,
    f1_score,
    labelled_images,
    mean_metrics,
    ndcg_at_k,
    precision_at_k,
    query_metrics,
    recall_at_k,
    reciprocal_rank,
)
from tests.conftest import PHOTOS, REAL_MODEL

F, T = False, True


def test_metrics_by_hand() -> None:
    ranked = [F, T, F, T, F]  # relevant at ranks 2 and 4; 3 relevant in the library
    assert reciprocal_rank(ranked) == 0.5
    assert precision_at_k(ranked, 5) == 0.4
    assert recall_at_k(ranked, 5, 3) == pytest.approx(2 / 3)
    assert f1_score(0.4, 2 / 3) == pytest.approx(0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # 1.0616
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # 2.1309
    assert ndcg_at_k(ranked, 5, 3) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranked, 5, 3) == pytest.approx(0.49819, abs=1e-5)


def test_metric_edges() -> None:
    assert reciprocal_rank([F, F, F]) == 0.0
    assert precision_at_k([T, T], 2) == 1.0 and precision_at_k([T, F, T], 2) == 0.5
    assert recall_at_k([T, T, T], 2, 10) == 0.2  # only the top 2 count
    assert ndcg_at_k([T, T], 2, 1) == pytest.approx(1 + 1 / math.log2(3))  # over ideal of 1
    assert ndcg_at_k([F, F], 2, 2) == 0.0
    assert f1_score(0.0, 0.0) == 0.0
    with pytest.raises(ValueError):
        recall_at_k([T], 1, 0)
    perfect = query_metrics([T, T, F], 2, 2)
    assert perfect == {"mrr": 1.0, "ndcg": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    mean = mean_metrics([perfect, query_metrics([F, F, F], 2, 2)])
    assert mean == {"mrr": 0.5, "ndcg": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}


def labelled_folder(root: Path, split: bool = False) -> Path:
    for p in PHOTOS:
        label = p.name.rsplit("-", 1)[0]
        folder = root / ("train" if split else "") / label
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, folder / p.name)
    return root


def test_labels_are_the_folders_holding_the_images(tmp_path: Path) -> None:
    folder = labelled_folder(tmp_path / "set", split=True)
    (folder / "loose.jpg").write_bytes(PHOTOS[0].read_bytes())
    labels = labelled_images(folder)
    assert len(labels) == 40  # the loose file at the top has no label
    assert labels[str(folder.resolve() / "train" / "hat" / PHOTOS[4].name)] == "hat"
    assert set(labels.values()) == {p.name.rsplit("-", 1)[0] for p in PHOTOS}


def test_bad_folders_say_why(tmp_path: Path) -> None:
    with pytest.raises(DesktopAppError, match="not a folder"):
        list(evaluate(tmp_path / "missing", "histogram"))
    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    shutil.copy2(PHOTOS[0], one / "a.jpg")
    with pytest.raises(DesktopAppError, match="two sub-folders"):
        list(evaluate(tmp_path / "one", "histogram"))


def test_eval_command_on_labelled_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str
) -> None:
    folder = labelled_folder(tmp_path / "set")
    (folder / "hat" / "copy.jpg").write_bytes((folder / "hat" / PHOTOS[4].name).read_bytes())
    code = main(["eval", str(folder), "--model", model, "--k", "3", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["images"] == 41 and out["queries"] == 41 and out["k"] == 3
    assert set(out["per_label"]) == {p.name.rsplit("-", 1)[0] for p in PHOTOS}
    assert out["per_label"]["hat"]["queries"] == 5
    for m in ("mrr", "ndcg", "precision", "recall", "f1"):
        assert 0.0 <= out["overall"][m] <= 1.0
    # the copy of a hat finds its twin first: its reciprocal rank is 1, which lifts hats
    assert out["per_label"]["hat"]["mrr"] >= 0.4
    if model == REAL_MODEL:  # better than chance (a random ranking gives P@3 ≈ 3/39)
        assert out["overall"]["precision"] > 0.2
    # nothing of the temporary library is left in the user's data dir
    assert not (tmp_path / "app-home" / "data" / "catalog.sqlite3").exists()

    code = main(["eval", str(folder), "--model", model])
    table = capsys.readouterr().out
    assert code == 0 and "NDCG@10" in table and "\nall " in table and "\nskirt " in table
