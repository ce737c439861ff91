"""The date filter uses the EXIF capture date, else the modified date (issue 12).

The capture time is read from the header at index time and kept in the catalog
(``files.taken``, catalog format 3); a catalog from before it gets the times on the next
scan without re-embedding anything.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_app.engine.filters import ResultFilter, when_label
from desktop_app.engine.imageio import load_image, parse_exif_time, read_header, taken_time
from desktop_app.engine.library import Library

from .conftest import HISTOGRAM_MODEL, run_index

SUMMER_2015 = "2015:07:14 15:32:10"
MODIFIED_2021 = 1_625_000_000  # 2021-06-29 (UTC)


def photo(path: Path, seed: int, taken: str | None = None, where: str = "original") -> Path:
    """A distinct JPEG; ``taken`` goes in DateTimeOriginal, or in IFD0's DateTime."""
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0110] = "TestCam"  # a model name, so the EXIF block exists even without a time
    if taken is not None and where == "original":
        exif.get_ifd(0x8769)[0x9003] = taken
    elif taken is not None:
        exif[0x0132] = taken
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", exif=exif)
    os.utime(path, (MODIFIED_2021, MODIFIED_2021))
    return path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2015:07:14 15:32:10", "2015-07-14T15:32:10"),
        (b"2015:07:14 15:32:10\x00", "2015-07-14T15:32:10"),
        ("2015:07:14", "2015-07-14T00:00:00"),
        ("0000:00:00 00:00:00", ""),  # cameras write zeros when the clock was never set
        ("    :  :     :  :  ", ""),
        ("2015-13-45 99:99:99", ""),
        ("", ""),
        (None, ""),
        (12345, ""),
    ],
)
def test_exif_times_are_parsed_and_nonsense_is_none(value: object, expected: str) -> None:
    assert parse_exif_time(value) == expected


def test_capture_time_is_read_from_the_header_best_tag_first(tmp_path: Path) -> None:
    original = photo(tmp_path / "a.jpg", 1, SUMMER_2015)
    edited = photo(tmp_path / "b.jpg", 2, "2016:01:02 03:04:05", where="ifd0")
    none = photo(tmp_path / "c.jpg", 3)
    assert load_image(original).taken == "2015-07-14T15:32:10"
    assert read_header(original) == (64, 48, "2015-07-14T15:32:10")
    assert read_header(edited)[2] == "2016-01-02T03:04:05"  # IFD0 DateTime as the fallback
    assert read_header(none)[2] == ""
    assert taken_time(None) == ""


def test_the_date_filter_uses_the_exif_date_else_the_modified_date(
    lib: Library, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    from_2015 = photo(folder / "summer.jpg", 1, SUMMER_2015)
    no_exif_date = photo(folder / "plain.jpg", 2)  # modified in 2021, no capture time
    run_index(lib, [folder])
    row = lib.catalog.file(str(from_2015))
    assert row is not None and row.taken == "2015-07-14T15:32:10"
    assert row.day == date(2015, 7, 14)

    def found(f: ResultFilter) -> set[str]:
        return {
            r.path for r in lib.search_image(from_2015, top_k=10, threshold=-1.0, result_filter=f)
        }

    assert found(ResultFilter(date_from=date(2015, 7, 14), date_to=date(2015, 7, 14))) == {
        str(from_2015)
    }
    in_2021 = ResultFilter(date_from=date(2021, 1, 1), date_to=date(2021, 12, 31))
    assert found(in_2021) == {str(no_exif_date)}  # its modified date; summer.jpg's is 2021 too
    results = lib.search_image(from_2015, top_k=10, threshold=-1.0)
    by_path = {r.path: r for r in results}
    assert when_label(by_path[str(from_2015)].taken, 0) == "taken 2015-07-14 15:32"
    assert by_path[str(no_exif_date)].taken == ""


def test_an_older_catalog_gets_capture_times_on_the_next_scan_without_re_embedding(
    app_home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    photo(folder / "summer.jpg", 1, SUMMER_2015)
    photo(folder / "plain.jpg", 2)
    lib = Library.open(model=HISTOGRAM_MODEL)
    try:
        run_index(lib, [folder])
        catalog_path = lib.catalog.path
    finally:
        lib.close()
    # make it a format-2 catalog, as the release before wrote it
    with sqlite3.connect(catalog_path) as db:
        db.execute("ALTER TABLE files DROP COLUMN taken")
        db.execute("UPDATE meta SET value='2' WHERE key='schema'")
    lib = Library.open(model=HISTOGRAM_MODEL)
    try:
        assert lib.catalog.schema_version == 3
        assert {r.taken for r in lib.catalog.files_in(str(folder)).values()} == {None}
        summary = run_index(lib, [folder])
        assert summary.embedded == 0 and summary.reused == 2 and not summary.failed
        taken = {Path(p).name: r.taken for p, r in lib.catalog.files_in(str(folder)).items()}
        assert taken == {"summer.jpg": "2015-07-14T15:32:10", "plain.jpg": ""}
        again = run_index(lib, [folder])
        assert again.unchanged == 2 and again.reused == 0
    finally:
        lib.close()


def test_a_malformed_stored_capture_time_falls_back_to_the_modified_day() -> None:
    from desktop_app.engine.catalog import FileRow

    row = FileRow("/p/a.jpg", "/p", 1, MODIFIED_2021 * 10**9, "f", 1, 1, "ok", None, "garbage")
    assert row.day.year == 2021
