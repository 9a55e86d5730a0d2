"""The loader on a real DuckDB file: good files land once, broken files stop with a clear message."""

from __future__ import annotations

import gzip
import re
import shutil

import pytest

from shopper_segments.loader import DuckDBWarehouse, EventFileError, EXPECTED_HEADER, load_event_files
from conftest import NOVEMBER_HEAD, OCTOBER_HEAD


@pytest.fixture()
def warehouse(tmp_path):
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    yield wh
    wh.close()


def stored(wh) -> tuple[int, int]:
    files = wh.con.execute("select count(*) from raw.event_files").fetchall()[0][0]
    lines = wh.con.execute("select count(*) from raw.event_lines").fetchall()[0][0]
    return files, lines


def quiet(*_):
    pass


def test_lines_land_untouched_with_their_numbers(warehouse, tmp_path):
    load_event_files(warehouse, OCTOBER_HEAD, log=quiet)
    lines = OCTOBER_HEAD.read_text(encoding="utf-8").split("\n")
    rows = warehouse.con.execute("select line_number, line from raw.event_lines order by line_number").fetchall()
    assert [n for n, _ in rows] == list(range(2, len(lines) + 1))  # line 1 is the header, not stored
    assert [text for _, text in rows] == lines[1:]
    info = warehouse.con.execute("select file_name, has_header, line_count, status from raw.event_files").fetchall()
    assert info == [("2019-Oct-head.csv", True, len(lines) - 1, "loaded")]


def test_headerless_gzip_and_crlf_files_land_the_same_lines(warehouse, tmp_path):
    text = NOVEMBER_HEAD.read_text(encoding="utf-8")
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "a.csv.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "lake" / "b.csv").write_bytes(text.replace("\n", "\r\n").encode() + b"\r\n")
    result = load_event_files(warehouse, tmp_path / "lake", log=quiet)
    assert [name for name, _ in result.loaded] == ["a.csv.gz", "b.csv"]
    by_file = warehouse.con.execute(
        "select f.file_name, list(l.line order by l.line_number) from raw.event_lines l "
        "join raw.event_files f using (load_id) group by 1 order by 1"
    ).fetchall()
    assert by_file[0][1] == by_file[1][1] == text.split("\n")


def test_blank_lines_are_kept_as_lines(warehouse, tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text(EXPECTED_HEADER + "\n" + GOOD_LINE + "\n\n" + GOOD_LINE + "\n\n")
    load_event_files(warehouse, path, log=quiet)
    rows = warehouse.con.execute("select line_number, line from raw.event_lines order by line_number").fetchall()
    assert rows == [(2, GOOD_LINE), (3, ""), (4, GOOD_LINE), (5, "")]


def test_loading_is_idempotent_and_same_content_is_not_stored_twice(warehouse, tmp_path):
    load_event_files(warehouse, OCTOBER_HEAD, log=quiet)
    before = stored(warehouse)
    again = load_event_files(warehouse, OCTOBER_HEAD, log=quiet)
    assert again.skipped == ["2019-Oct-head.csv"] and stored(warehouse) == before

    copy = tmp_path / "renamed.csv"
    shutil.copy(OCTOBER_HEAD, copy)
    result = load_event_files(warehouse, copy, log=quiet)
    assert result.duplicates == [("renamed.csv", "2019-Oct-head.csv")]
    files, lines = stored(warehouse)
    assert (files, lines) == (before[0] + 1, before[1])


def test_a_changed_file_under_a_known_name_stops_the_run(warehouse, tmp_path):
    original = tmp_path / "day.csv"
    original.write_text(NOVEMBER_HEAD.read_text())
    load_event_files(warehouse, original, log=quiet)
    before = stored(warehouse)
    original.write_text(NOVEMBER_HEAD.read_text().replace("view", "cart", 1))
    with pytest.raises(EventFileError, match=r"day\.csv: already loaded \(load 1\) with different content"):
        load_event_files(warehouse, original, log=quiet)
    assert stored(warehouse) == before


GOOD_LINE = "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3-4e00-8c23"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", b"", "empty file (no lines)"),
        ("blank.csv", b"\n\n", "empty file (no lines)"),
        ("header_only.csv", (EXPECTED_HEADER + "\n").encode(), "empty file (a header but no events)"),
        ("truncated.csv.gz", gzip.compress(((GOOD_LINE + "\n") * 5000).encode())[:-200], "truncated gzip file"),
        ("not_gzip.csv.gz", (GOOD_LINE + "\n").encode(), "not a valid gzip file"),
        ("latin1.csv", (EXPECTED_HEADER + "\n" + GOOD_LINE.replace("shiseido", "caf\xe9") + "\n").encode("latin-1"),
         "not UTF-8 text (first bad byte on line 2)"),
        ("orders.csv", b"order_id,customer,amount\n1,bob,3.5\n", "unexpected header 'order_id,customer,amount'"),
        ("semicolons.csv", b"2019-10-01 00:00:00 UTC;view;1;2;;;1.0;5;s\n" * 3,
         "no line has the 9 REES46 fields (lines have 1 fields)"),
        ("binary.csv", (EXPECTED_HEADER + "\n" + GOOD_LINE + "\n" + GOOD_LINE + "\x1f\x00\n").encode(),
         "binary data: the control character 0x1F on line 3"),
    ],
)
def test_a_broken_file_stops_with_its_name_and_problem_and_keeps_earlier_data(warehouse, tmp_path, name, content,
                                                                              message):
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(OCTOBER_HEAD, lake / "2019-10-01.csv")
    (lake / name).write_bytes(content)  # sorts after the good file
    with pytest.raises(EventFileError) as error:
        load_event_files(warehouse, lake, log=quiet)
    assert str(error.value).startswith(f"{name}: ")
    assert message in str(error.value)
    # The good file landed before is intact; nothing of the broken file was stored.
    assert warehouse.con.execute("select file_name from raw.event_files").fetchall() == [("2019-10-01.csv",)]
    assert stored(warehouse)[1] == len(OCTOBER_HEAD.read_text().split("\n")) - 1

    # Once the file is removed, the next run continues normally.
    (lake / name).unlink()
    shutil.copy(NOVEMBER_HEAD, lake / "2019-11-01.csv")
    result = load_event_files(warehouse, lake, log=quiet)
    assert [n for n, _ in result.loaded] == ["2019-11-01.csv"] and result.skipped == ["2019-10-01.csv"]


def test_the_command_reports_a_broken_file_and_exits_non_zero(tmp_path):
    from conftest import Warehouse

    wh = Warehouse(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,customer\n1,bob\n")
    result = wh.segments("load", "--events", str(bad), check=False)
    assert result.returncode == 2
    assert re.search(r"ERROR: event file bad\.csv: unexpected header", result.stderr)
    assert "earlier data is intact" in result.stderr
