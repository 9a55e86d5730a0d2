"""The loader on a real DuckDB file: good files land once, broken files are quarantined with a clear reason."""

from __future__ import annotations

import gzip
import itertools
import re
import shutil

import pytest

from shopper_segments.ingest.files import EXPECTED_HEADER, LANDED_FIELD_COLUMNS, LANDED_LINE
from shopper_segments.ingest.loader import load_event_files
from shopper_segments.ingest.warehouses import DuckDBWarehouse
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
    rows = warehouse.con.execute(f"select line_number, {LANDED_LINE} from raw.event_lines order by line_number").fetchall()
    assert [n for n, _ in rows] == list(range(2, len(lines) + 1))  # line 1 is the header, not stored
    assert [text for _, text in rows] == lines[1:]
    # Plain lines (no quote, nine fields) are stored as their fields, the others (here the truncated
    # last line) as their text.
    landed = warehouse.con.execute(
        f"select line, [{', '.join(LANDED_FIELD_COLUMNS)}] from raw.event_lines order by line_number").fetchall()
    for (text, fields), line in zip(landed, lines[1:]):
        plain = '"' not in line and line.count(",") == 8
        assert (text, fields) == ((None, line.split(",")) if plain else (line, [None] * 9))
    assert sum(text is not None for text, _ in landed) == 1
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
        f"select f.file_name, list({LANDED_LINE} order by l.line_number) from raw.event_lines l "
        "join raw.event_files f using (load_id) group by 1 order by 1"
    ).fetchall()
    assert by_file[0][1] == by_file[1][1] == text.split("\n")


def test_blank_lines_are_kept_as_lines(warehouse, tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text(EXPECTED_HEADER + "\n" + GOOD_LINE + "\n\n" + GOOD_LINE + "\n\n")
    load_event_files(warehouse, path, log=quiet)
    rows = warehouse.con.execute(f"select line_number, {LANDED_LINE} from raw.event_lines order by line_number").fetchall()
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


def test_a_changed_file_under_a_known_name_is_quarantined_until_it_is_put_back(warehouse, tmp_path):
    original = tmp_path / "day.csv"
    original.write_text(NOVEMBER_HEAD.read_text())
    load_event_files(warehouse, original, log=quiet)
    lines_before = stored(warehouse)[1]
    original.write_text(NOVEMBER_HEAD.read_text().replace("view", "cart", 1))
    result = load_event_files(warehouse, original, log=quiet)
    assert result.loaded == [] and len(result.quarantined) == 1
    assert re.match(r"already loaded \(load 1\) with different content", result.quarantined[0][1])
    assert stored(warehouse) == (2, lines_before)  # recorded, nothing of it stored
    again = load_event_files(warehouse, original, log=quiet)
    assert again.quarantined[0][1].startswith("still quarantined, content unchanged since load 2: already loaded")
    assert stored(warehouse) == (2, lines_before)  # not recorded twice
    original.write_text(NOVEMBER_HEAD.read_text())  # the original content is back
    assert load_event_files(warehouse, original, log=quiet).skipped == ["day.csv"]


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
         "fields are separated by semicolons (';'), not commas"),
        ("tabs.csv", (EXPECTED_HEADER.replace(",", "\t") + "\n" + GOOD_LINE.replace(",", "\t") + "\n").encode(),
         "fields are separated by tabs ('\\t'), not commas"),
        ("pipes.csv", ('"' + EXPECTED_HEADER.replace(",", '"|"') + '"\n' + GOOD_LINE.replace(",", "|") + "\n").encode(),
         "fields are separated by pipes ('|'), not commas"),
        ("commas_nowhere.csv", b"2019-10-01 00:00:00 UTC view 1 2\n" * 3, "no line has the 9 REES46 fields"),
        ("huge_line.csv", (EXPECTED_HEADER + "\n" + GOOD_LINE + "\n" + "x" * 10_000_000 + "\n").encode(),
         "line 3 is 10,000,000 bytes long, over DuckDB's line-length cap of 2,000,000 bytes (max_line_size)"),
        ("binary.csv", (EXPECTED_HEADER + "\n" + GOOD_LINE + "\n" + GOOD_LINE + "\x1f\x00\n").encode(),
         "binary data: the control character 0x1F on line 3"),
    ],
)
def test_a_broken_file_is_quarantined_with_its_problem_and_the_others_land(warehouse, tmp_path, name, content,
                                                                             message):
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(OCTOBER_HEAD, lake / "0-first.csv")  # sorts before the broken file
    (lake / name).write_bytes(content)
    shutil.copy(NOVEMBER_HEAD, lake / "~last.csv")  # and after it
    result = load_event_files(warehouse, lake, log=quiet)
    assert [n for n, _ in result.loaded] == ["0-first.csv", "~last.csv"]
    assert [n for n, _ in result.quarantined] == [name] and message in result.quarantined[0][1]
    # Recorded with its reason; nothing of the broken file was stored.
    files = warehouse.con.execute("select file_name, status, line_count, reason from raw.event_files "
                                  "where status = 'quarantined'").fetchall()
    assert files == [(name, "quarantined", 0, result.quarantined[0][1])]
    lines_of_good_files = len(OCTOBER_HEAD.read_text().split("\n")) - 1 + len(NOVEMBER_HEAD.read_text().split("\n"))
    assert stored(warehouse) == (3, lines_of_good_files)

    # Unchanged, it stays quarantined (said again, not recorded again); replaced by a good file, it lands.
    assert load_event_files(warehouse, lake, log=quiet).quarantined[0][1].startswith("still quarantined")
    assert stored(warehouse)[0] == 3
    (lake / name).write_bytes(gzip.compress(GOOD_LINE.encode()) if name.endswith(".gz") else GOOD_LINE.encode())
    result = load_event_files(warehouse, lake, log=quiet)
    assert result.loaded == [(name, 1)] and result.quarantined == []


def test_the_command_reports_a_broken_file_and_exits_non_zero(tmp_path):
    from conftest import Warehouse

    wh = Warehouse(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,customer\n1,bob\n")
    result = wh.segments("load", "--events", str(bad), check=False)
    assert result.returncode == 2
    assert "ERROR: 1 event file(s) quarantined" in result.stderr
    assert re.search(r"event file bad\.csv: unexpected header", result.stderr)
    assert "Traceback" not in result.stderr


def test_an_order_of_good_and_broken_files_never_changes_what_lands(tmp_path):
    """A good, a broken and a changed-name file in every arrival order: the good ones always land."""
    good = {"good-a.csv": GOOD_LINE + "\n", "good-b.csv": GOOD_LINE.replace("view", "cart") + "\n"}
    broken = {"broken.csv": "order_id,amount\n1,2\n"}
    for order, names in enumerate(itertools.permutations([*good, *broken])):
        lake = tmp_path / f"lake{order}"
        lake.mkdir()
        for rank, name in enumerate(names):  # the rank prefix sets the order the folder is read in
            (lake / f"{rank}-{name}").write_text({**good, **broken}[name])
        wh = DuckDBWarehouse(tmp_path / f"wh{order}.duckdb")
        try:
            result = load_event_files(wh, lake, log=quiet)
            assert sorted(n.split("-", 1)[1] for n, _ in result.loaded) == sorted(good), names
            assert [n.split("-", 1)[1] for n, _ in result.quarantined] == ["broken.csv"], names
            assert stored(wh) == (3, 2)
        finally:
            wh.close()


def test_file_names_are_literal_never_glob_patterns(warehouse, tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    contents = {  # each file holds one event of its own user id
        "ev1.csv": 1, "ev[1].csv": 2, "q1.csv": 3, "q?.csv": 4, "star*.csv": 5, "starX.csv": 6,
    }
    for name, user in contents.items():
        (lake / name).write_text(GOOD_LINE.replace("541312140", str(user)) + "\n")
    result = load_event_files(warehouse, lake, log=quiet)
    assert sorted(n for n, _ in result.loaded) == sorted(contents)
    landed = dict(warehouse.con.execute(
        "select f.file_name, user_id_text from raw.event_lines l join raw.event_files f using (load_id)"
    ).fetchall())
    assert landed == {name: str(user) for name, user in contents.items()}

    # A path that exists is taken literally, even when it reads as a pattern.
    other = DuckDBWarehouse(tmp_path / "other.duckdb")
    try:
        single = load_event_files(other, lake / "q?.csv", log=quiet)
        assert single.loaded == [("q?.csv", 1)]
        assert other.con.execute("select user_id_text from raw.event_lines").fetchall()[0][0] == "4"
        # Only a location that does not exist is a glob.
        globbed = load_event_files(other, lake / "ev*.csv", log=quiet)
        assert sorted(n for n, _ in globbed.loaded) == ["ev1.csv", "ev[1].csv"]
    finally:
        other.close()


def test_a_folder_matches_suffixes_in_any_case_and_says_what_it_skips(warehouse, tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "UPPER.CSV").write_text(GOOD_LINE + "\n")
    (lake / "mixed.Csv.GZ").write_bytes(gzip.compress((GOOD_LINE.replace("view", "cart") + "\n").encode()))
    (lake / "old.csv.bz2").write_bytes(b"BZh9")
    (lake / "notes.txt").write_text("hello")
    (lake / "archive").mkdir()
    (lake / "loop.csv").symlink_to(lake / "loop.csv")
    (lake / "dangling.csv").symlink_to(lake / "gone.csv")
    messages = []
    result = load_event_files(warehouse, lake, log=messages.append)
    assert sorted(n for n, _ in result.loaded) == ["UPPER.CSV", "mixed.Csv.GZ"]
    assert dict(result.not_event_files) == {
        "archive": "a folder: sub-folders are not read (pass it, or a glob such as 'DIR/*/*.csv', to load it)",
        "dangling.csv": "broken symbolic link (its target does not exist)",
        "loop.csv": "symbolic link loop",
        "notes.txt": "not a .csv or .csv.gz file",
        "old.csv.bz2": "compressed with bzip2, which is not supported: decompress it or recompress it with gzip",
    }
    assert all(any(line.startswith(f"  {name}: not read: ") for line in messages) for name in dict(result.not_event_files))


def test_mixed_line_ends_and_a_quoted_header_are_accepted_and_lines_stay_as_delivered(warehouse, tmp_path):
    lines = OCTOBER_HEAD.read_text(encoding="utf-8").split("\n")
    mixed = tmp_path / "mixed.csv.gz"  # header ends in CRLF, rows in LF, one row in CRLF again
    mixed.write_bytes(gzip.compress((lines[0] + "\r\n" + lines[1] + "\r\n" + "\n".join(lines[2:])).encode()))
    quoted_lines = ['"' + line.replace(",", '","') + '"' for line in lines[:3]]
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("\n".join(quoted_lines) + "\n")
    load_event_files(warehouse, mixed, log=quiet)
    load_event_files(warehouse, quoted, log=quiet)
    by_file = dict(warehouse.con.execute(
        f"select f.file_name, list({LANDED_LINE} order by l.line_number) from raw.event_lines l "
        "join raw.event_files f using (load_id) group by 1"
    ).fetchall())
    assert by_file["mixed.csv.gz"] == lines[1:]
    assert by_file["quoted.csv"] == quoted_lines[1:]  # untouched: quotes kept for staging to split
    assert warehouse.con.execute("select bool_and(has_header) from raw.event_files").fetchall()[0][0]


def test_a_warehouse_landed_before_lines_were_split_takes_new_files_split(tmp_path):
    """The landing table of an older warehouse (lines as text only) gets the field columns; its lines stay."""
    import duckdb

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema raw")
        con.execute("create table raw.event_lines (load_id integer not null, line_number bigint not null, "
                    "line varchar not null)")
        con.execute("insert into raw.event_lines values (1, 1, ?)", [GOOD_LINE])
        con.execute("create table raw.event_files (load_id integer primary key, file_name varchar not null, "
                    "content_sha256 varchar not null, file_bytes bigint not null, has_header boolean, "
                    "line_count bigint not null, status varchar not null, duplicate_of_load_id integer, "
                    "loaded_at timestamp not null)")
        con.execute("insert into raw.event_files values (1, 'old.csv', 'x', 1, false, 1, 'loaded', null, now())")
    old = DuckDBWarehouse(path)
    try:
        load_event_files(old, _file(tmp_path, "new.csv", GOOD_LINE.replace("view", "cart")), log=quiet)
        rows = old.con.execute(f"select load_id, line, user_id_text, {LANDED_LINE} from raw.event_lines "
                               "order by load_id").fetchall()
        assert rows == [(1, GOOD_LINE, None, GOOD_LINE), (2, None, "541312140", GOOD_LINE.replace("view", "cart"))]
    finally:
        old.close()


def _file(folder, name: str, line: str):
    path = folder / name
    path.write_text(line + "\n")
    return path
