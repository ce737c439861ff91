"""The duplicate finder: grouping from nearest neighbours, presets and thresholds,
"not duplicates" marks, keep-the-best rules and moving to the trash.

The library is filled with hand-made vectors (no encoder needed), so each test knows
exactly which pairs are how similar."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from desktop_app.engine.catalog import FileRow, VectorRow
from desktop_app.engine.duplicate_review import (
    keep_by_path,
    keep_largest,
    keep_newest,
    mark_not_duplicates,
    trash_files,
)
from desktop_app.engine.duplicates import DuplicateFile, DuplicateGroup, last_report
from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.fingerprint import fingerprint_file
from desktop_app.engine.library import Library
from desktop_app.engine.settings import OFFLINE_MODEL
from desktop_app.engine.vector_ids import vector_id, vector_metadata

DIM = 16


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(base: np.ndarray, sim: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine similarity ``sim`` to ``base``."""
    noise = rng.normal(size=base.shape).astype(np.float32)
    noise -= noise.dot(base) * base
    noise = unit(noise)
    return unit(sim * base + np.sqrt(1 - sim**2) * noise)


class Fake:
    """A library whose files are real (tiny) files on disk with chosen vectors."""

    def __init__(self, lib: Library, folder: Path) -> None:
        self.lib = lib
        self.folder = folder
        lib.catalog.add_root(str(folder))

    def add(self, name: str, vector: np.ndarray, content: str | None = None, **kw: int) -> str:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if content is not None else name)
        fp = fingerprint_file(path)
        st = path.stat()
        row = FileRow(
            str(path), str(self.folder), st.st_size, st.st_mtime_ns, fp,
            kw.get("width", 100), kw.get("height", 100), "ok", None,
        )  # fmt: skip
        cat = self.lib.catalog
        with cat.transaction() as db:
            cat.put_files([row], db)
            cat.put_vectors(OFFLINE_MODEL, [VectorRow(fp, "full", 0, None, vector)], db)
        self.lib.store.upsert(
            OFFLINE_MODEL, [vector_id(fp, "full", 0)], vector[None], [vector_metadata(fp, None)]
        )
        return str(path)

    def groups(self, preset: str = "near", threshold: float | None = None) -> list[DuplicateGroup]:
        return last_report(self.lib.duplicates(preset, threshold)).groups


@pytest.fixture(autouse=True)
def system_trash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path | None:
    """The freedesktop trash send2trash uses, moved under tmp_path: it reads
    XDG_DATA_HOME once, at import, so its module constants are patched too."""
    import send2trash

    xdg = tmp_path / "xdg"
    xdg.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    if send2trash.send2trash.__module__ != "send2trash.plat_other":
        return None  # gio or a platform trash: only the test that trashes for real skips
    from send2trash import plat_other

    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(xdg))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(xdg / "Trash"))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(xdg / "Trash"))
    return xdg / "Trash"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Fake]:
    with Library.open(tmp_path / "data", model=OFFLINE_MODEL) as lib:
        yield Fake(lib, tmp_path / "photos")


def test_groups_by_threshold_and_preset(fake: Fake) -> None:
    rng = np.random.default_rng(0)
    a, b = unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))
    pa = fake.add("a.jpg", a)
    pa_near = fake.add("a-small.jpg", near(a, 0.95, rng))
    pa_burst = fake.add("a-burst.jpg", near(a, 0.85, rng))
    pb = fake.add("b.jpg", b)
    pb_copy = fake.add("copy/b.jpg", b, content="b.jpg")  # same bytes elsewhere
    for i in range(20):  # unrelated photos
        fake.add(f"other{i}.jpg", unit(rng.normal(size=DIM)))

    near_groups = fake.groups("near")
    assert [(sorted(g.paths), g.kind) for g in near_groups] == [
        (sorted([pb, pb_copy]), "exact"),
        (sorted([pa, pa_near]), "near"),
    ]
    assert near_groups[0].score == 1.0
    assert near_groups[1].score == pytest.approx(0.95, abs=1e-3)

    similar = fake.groups("similar")
    assert sorted(sorted(g.paths) for g in similar) == [
        sorted([pa, pa_burst, pa_near]),
        sorted([pb, pb_copy]),
    ]
    burst_group = next(g for g in similar if pa in g.paths)
    assert burst_group.kind == "similar"
    assert burst_group.score == pytest.approx(0.85, abs=2e-3)

    exact = fake.groups("exact")
    assert [sorted(g.paths) for g in exact] == [sorted([pb, pb_copy])]
    # a threshold overrides the preset's
    assert len(fake.groups("near", threshold=0.99)) == 1


def test_not_duplicates_mark_is_remembered(fake: Fake, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = unit(rng.normal(size=DIM))
    fake.add("a.jpg", a)
    fake.add("a2.jpg", near(a, 0.96, rng))
    (group,) = fake.groups()
    assert mark_not_duplicates(fake.lib.catalog, group) == 1
    assert fake.groups() == []
    # remembered across sessions: the mark lives in the catalog
    fake.lib.close()
    with Library.open(tmp_path / "data", model=OFFLINE_MODEL) as lib:
        assert last_report(lib.duplicates("near")).groups == []
        lib.catalog.unmark_not_duplicates([tuple(group.fingerprints)])  # type: ignore[list-item]
        assert len(last_report(lib.duplicates("near")).groups) == 1
    fake.lib = Library.open(tmp_path / "data", model=OFFLINE_MODEL)  # for the fixture's close


def test_bad_preset_or_threshold_says_so(fake: Fake) -> None:
    with pytest.raises(DesktopAppError, match="unknown preset"):
        fake.groups("blurry")
    with pytest.raises(DesktopAppError, match="outside"):
        fake.groups("near", threshold=3.0)


def test_crops_preset_needs_region_data(fake: Fake) -> None:
    fake.add("a.jpg", unit(np.ones(DIM)))
    with pytest.raises(DesktopAppError, match="region data"):
        fake.groups("crops")


def test_progress_counts_every_image(fake: Fake) -> None:
    rng = np.random.default_rng(2)
    for i in range(5):
        fake.add(f"p{i}.jpg", unit(rng.normal(size=DIM)))
    steps = list(fake.lib.duplicates("near"))
    assert steps[0].phase == "searching" and steps[0].total == 5
    assert steps[-1].phase == "done" and steps[-1].report is not None
    assert steps[-1].report.images == 5 and steps[-1].report.groups == []


def _file(path: str, size: int, w: int, h: int, mtime: int) -> DuplicateFile:
    return DuplicateFile(path, path, size, w, h, mtime)


def test_keep_rules() -> None:
    big = _file("/p/Originals/big.jpg", 900, 4000, 3000, 1)
    new = _file("/p/edits/new.jpg", 100, 800, 600, 5)
    heavy = _file("/p/edits/heavy.png", 5000, 800, 600, 5)
    files = [new, big, heavy]
    assert keep_largest(files) == big
    assert keep_newest(files) == heavy  # newest, then the larger of the tie
    assert keep_by_path(files, "/p/edits") == heavy
    assert keep_by_path(files, "*/Originals/*") == big
    assert keep_by_path(files, "/elsewhere") is None


def test_trash_moves_the_others_and_updates_the_index(fake: Fake) -> None:
    rng = np.random.default_rng(3)
    a = unit(rng.normal(size=DIM))
    keep = fake.add("a.jpg", a)
    other = fake.add("a2.jpg", near(a, 0.97, rng))
    copy = fake.add("dup/a.jpg", a, content="a.jpg")
    (group,) = fake.groups()
    trashed: list[str] = []

    def to_trash(path: str) -> None:  # the system trash, observed
        trashed.append(path)
        os.replace(path, path + ".trashed")

    report = trash_files(fake.lib.catalog, fake.lib.store, group, [keep], trash=to_trash)
    assert sorted(report.trashed) == sorted([other, copy]) == sorted(trashed)
    assert report.failed == []
    assert Path(keep).exists()
    assert fake.lib.catalog.file(other) is None and fake.lib.catalog.file(copy) is None
    assert fake.lib.catalog.file(keep) is not None
    assert report.removed_vectors == 1  # a2's content; a.jpg's stays for the kept file
    assert fake.lib.store.count(OFFLINE_MODEL) == 1
    assert fake.groups() == []


def test_trash_never_empties_a_group(fake: Fake) -> None:
    rng = np.random.default_rng(4)
    a = unit(rng.normal(size=DIM))
    keep = fake.add("a.jpg", a)
    other = fake.add("a2.jpg", near(a, 0.97, rng))
    (group,) = fake.groups()
    Path(keep).unlink()  # the file to keep vanished since the scan
    with pytest.raises(DesktopAppError, match="nothing was moved"):
        fake.lib.trash_duplicates(group, [keep])
    with pytest.raises(DesktopAppError, match="not in this group"):
        fake.lib.trash_duplicates(group, ["/nowhere.jpg"])
    assert Path(other).exists()


def test_trash_leaves_a_changed_file(fake: Fake) -> None:
    rng = np.random.default_rng(5)
    a = unit(rng.normal(size=DIM))
    keep = fake.add("a.jpg", a)
    other = fake.add("a2.jpg", near(a, 0.97, rng))
    (group,) = fake.groups()
    Path(other).write_text("edited since the scan, and longer")
    report = fake.lib.trash_duplicates(group, [keep])
    assert report.trashed == [] and report.failed[0][0] == other
    assert "changed" in report.failed[0][1]
    assert Path(other).exists()


def test_trash_uses_the_system_trash(fake: Fake, system_trash: Path | None) -> None:
    if system_trash is None:
        pytest.skip("the system trash here is not the freedesktop fallback")
    rng = np.random.default_rng(6)
    a = unit(rng.normal(size=DIM))
    keep = fake.add("a.jpg", a)
    other = fake.add("a2.jpg", near(a, 0.97, rng))
    (group,) = fake.groups()
    report = fake.lib.trash_duplicates(group, [keep])
    assert report.trashed == [other]
    assert not Path(other).exists()
    trashed = list((system_trash / "files").iterdir())
    assert [p.read_text() for p in trashed] == ["a2.jpg"]


def test_duplicates_command_on_real_photos(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path, model: str
) -> None:
    """Planted copies of real photos come back as groups of the right kind: a resized,
    brightened copy as near, a byte copy as exact, a crop of a mosaic as a crop (keypoints)."""
    from PIL import Image, ImageEnhance

    from desktop_app.cli import main
    from tests.conftest import FIXTURES

    originals = sorted(photos.glob("*.jpg"))
    small = photos / "small-copy.jpg"
    im = Image.open(originals[0])
    im = im.resize((im.width * 3 // 4, im.height * 3 // 4))  # 3/4 size, 10 % brighter
    ImageEnhance.Brightness(im).enhance(1.1).save(small, quality=80)
    byte_copy = photos / "sub" / originals[1].name
    byte_copy.parent.mkdir()
    byte_copy.write_bytes(originals[1].read_bytes())
    large = sorted((FIXTURES / "large").glob("*.jpg"))[:4]
    mosaic = Image.new("RGB", (800, 1066))
    for i, p in enumerate(large):
        mosaic.paste(Image.open(p), ((i % 2) * 400, (i // 2) * 533))
    mosaic.save(photos / "mosaic.jpg", quality=92)
    mosaic.crop((0, 0, 400, 533)).save(photos / "mosaic-corner.jpg", quality=92)
    data = str(tmp_path / "data")
    assert main(["index", str(photos), "--model", model, "--data-dir", data]) == 0
    capsys.readouterr()

    def groups(*args: str) -> list[dict]:  # type: ignore[type-arg]
        assert main(["duplicates", "--data-dir", data, "--json", *args]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["groups"]

    near = groups()
    by_paths = {frozenset(g["paths"]): g for g in near}
    assert by_paths[frozenset({str(originals[0]), str(small)})]["kind"] == "near"
    assert by_paths[frozenset({str(originals[1]), str(byte_copy)})]["kind"] == "exact"
    assert by_paths[frozenset({str(originals[1]), str(byte_copy)})]["score"] == 1.0
    assert len(near) == 2  # nothing else in forty different photos
    assert [g["paths"] for g in groups("--preset", "exact")] == [
        sorted([str(originals[1]), str(byte_copy)])
    ]
    crops = {frozenset(g["paths"]): g for g in groups("--preset", "crops")}
    pair = frozenset({str(photos / "mosaic.jpg"), str(photos / "mosaic-corner.jpg")})
    assert crops[pair]["kind"] == "crop"
    assert main(["duplicates", "--data-dir", data, "--preset", "near"]) == 0
    assert "2 groups (4 files)" in capsys.readouterr().out
