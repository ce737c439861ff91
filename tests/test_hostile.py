"""Hostile and odd files never crash or stall a run: a generated corpus of over 40 kinds
(``tests/hostile.py``) indexes to completion with every failure listed with its reason,
files that vanish or change while read cost only themselves, and the loading path is
fuzzed (``bench/fuzz_loading.py`` runs the same at scale). The histogram encoder: no
torch."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from desktop_app.engine import indexer as indexer_module
from desktop_app.engine.errors import ImageLoadError
from desktop_app.engine.library import Library

from .conftest import run_index
from .hostile import bind_socket, make_hostile_corpus
from .loading import exercise_loading, seed_images

# Pillow warns (UserWarning) about corrupt EXIF and similar while it reads on; the app
# runs with default warning filters, where that is a log line, not the error pytest makes it.
PILLOW_WARNINGS = pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")


@PILLOW_WARNINGS
@pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and sockets as on POSIX")
def test_hostile_corpus_indexes_to_completion_with_every_failure_explained(
    lib: Library, tmp_path: Path
) -> None:
    folder = tmp_path / "hostile"
    expect = make_hostile_corpus(folder)
    sock = bind_socket(folder / "socket.png")
    expect[str(folder / "socket.png")] = "failed"
    kinds = len(expect)
    assert kinds >= 40
    try:
        s = run_index(lib, [folder])
    finally:
        sock.close()
    failed = dict(s.failed)
    indexed = {p for p, r in lib.catalog.files_in(str(folder)).items() if r.ok}
    for path, outcome in expect.items():
        if outcome == "ok":
            assert path in indexed, f"{path!r} not indexed: {failed.get(path)}"
        elif outcome == "failed":
            assert path in failed, f"{path!r} should be listed as failed"
        elif outcome == "ignored":
            assert path not in indexed and path not in failed
        else:
            assert path in indexed or path in failed
    for path, reason in failed.items():
        assert reason and "unexpected error" not in reason, (path, reason)
    assert set(failed) <= set(expect)  # nothing failed that was meant to work
    assert (
        "10 gigapixel" not in str(failed)
        and "MP limit" in failed[str(folder / "bomb-10-gigapixels.png")]
    )
    # the failures are what status lists; a second run retries them and still finishes
    listed = {f.path for f in lib.status(load_encoder=False).failures}
    assert set(failed) <= listed
    again = run_index(lib, [folder])
    assert {p for p, _ in again.failed} == set(failed)
    assert again.embedded == 0


def test_files_that_vanish_or_change_while_read_cost_only_themselves(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), np.uint8)).save(folder / f"{i}.png")
    real_load = indexer_module.load_image

    def load_image(path: str, **kwargs: object) -> object:
        name = Path(path).name
        if name == "1.png":
            os.unlink(path)  # gone between the fingerprint and the decode
        elif name == "2.png":
            Path(path).write_bytes(b"rewritten mid-read: not an image any more")
        return real_load(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer_module, "load_image", load_image)
    s = run_index(lib, [folder])
    reasons = dict(s.failed)
    assert "not found" in reasons[str(folder / "1.png")]
    assert "not an image" in reasons[str(folder / "2.png")]
    assert s.embedded == 4
    monkeypatch.setattr(indexer_module, "load_image", real_load)
    Image.new("RGB", (30, 30), (1, 2, 3)).save(folder / "2.png")  # fixed: retried, indexed
    s = run_index(lib, [folder])
    assert s.failed == [] and s.embedded == 1 and s.removed == 1


# -- fuzzing the loading path ---------------------------------------------------------------
SEEDS = seed_images()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@PILLOW_WARNINGS
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.one_of(st.binary(max_size=512), mutated()))
def test_loading_path_raises_only_image_load_errors(data: bytes) -> None:
    exercise_loading(data)


@pytest.mark.parametrize(
    "crasher", sorted((Path(__file__).parent / "fixtures" / "crashers").glob("*")) or [None]
)
def test_kept_fuzz_crashers_stay_fixed(crasher: Path | None) -> None:
    if crasher is None:
        pytest.skip("no crashers kept yet")
    exercise_loading(crasher.read_bytes())


def test_exercise_loading_sees_a_real_image_through() -> None:
    im = Image.new("RGB", (300, 200), (10, 200, 30))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    assert exercise_loading(buf.getvalue()) is True
    with pytest.raises(AssertionError):  # the harness itself would notice a stray error
        exercise_loading(b"x", _inject=RuntimeError("boom"))
    assert exercise_loading(b"not an image") is False
    assert issubclass(ImageLoadError, Exception)
