"""Find, read and check raw REES46 event files: what the loader lands, and why it refuses a file.

A file is read with DuckDB into numbered lines (`read_event_file`) and refused as a whole when it is
broken (empty, not gzip, truncated, not UTF-8, another dataset's header, no line with the nine
fields), with a message naming the file and what is wrong (`EventFileError`). Which entries of a
location are event files at all is `discover_event_files`. Landing them is `loader`'s job.
"""

from __future__ import annotations

import csv
import errno
import glob
import gzip
import hashlib
import os
import re
import shutil
import stat
import tempfile
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb

from .. import settings

EXPECTED_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
EXPECTED_HEADER = ",".join(EXPECTED_COLUMNS)
# Matched case-insensitively on the file name (`X.CSV`, `x.csv.GZ`).
EVENT_FILE_SUFFIXES = (".csv", ".csv.gz")
# Compressions a folder may hold that the loader does not read: said when such a file is skipped.
_UNSUPPORTED_COMPRESSIONS = {".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", ".zip": "zip", ".lz4": "lz4"}
# Delimiters other tools write, named when a file uses one instead of the comma.
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
# A line that starts like an event (a date) rather than like a header.
_LOOKS_LIKE_EVENT = re.compile(r'^"?\d{4}-\d{2}-\d{2}')
# Lines are read whole: this byte never occurs in REES46 text, so DuckDB does not split them.
_LINE_DELIMITER = "\x1f"
# A landed line is stored split into its nine fields when it splits plainly: no double quote and
# exactly nine comma-separated fields, as nearly every REES46 line. Any other line (blank, quoted,
# another number of fields) keeps its text in `line`, which staging splits quote-aware and checks.
# The line as delivered is `line`, or else the fields joined by commas (dbt: landed_line). So the
# file's text is split once, when it is landed, and staging only checks the fields.
LANDED_FIELD_COLUMNS = tuple(f"{column}_text" for column in EXPECTED_COLUMNS)
LANDED_COLUMNS = ("load_id", "line_number", "line", *LANDED_FIELD_COLUMNS)
# The line as delivered, from a landed row (the same expression as the dbt macro landed_line).
LANDED_LINE = "coalesce(line, " + " || ',' || ".join(LANDED_FIELD_COLUMNS) + ")"


class EventFileError(Exception):
    """A file that cannot be loaded as a whole (it is quarantined). The message names the file and the problem."""

    def __init__(self, file_name: str, problem: str):
        super().__init__(f"{file_name}: {problem}")
        self.file_name = file_name
        self.problem = problem


@dataclass(frozen=True)
class EventFile:
    path: Path
    name: str  # identity of the file in the warehouse: its path relative to the location loaded


@dataclass
class Discovery:
    files: list[EventFile]
    skipped: list[tuple[str, str]]  # (entry name, why it is not read)
    # Makes a file's `path` readable while it is processed (S3: downloads it, then deletes the copy).
    fetch: Callable[[EventFile], AbstractContextManager] = field(default=lambda file: nullcontext())


def is_event_file_name(name: str) -> bool:
    return name.lower().endswith(EVENT_FILE_SUFFIXES)


def _why_not_read(path: Path) -> str | None:
    """None for a regular event file; otherwise why the folder entry is skipped."""
    try:
        target = path.stat()  # follows symbolic links
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return "broken symbolic link (its target does not exist)"
        return f"cannot be read ({error.strerror})"
    if stat.S_ISDIR(target.st_mode):
        return "a folder: sub-folders are not read (pass it, or a glob such as 'DIR/*/*.csv', to load it)"
    if not stat.S_ISREG(target.st_mode):
        return "not a regular file"
    return why_not_an_event_file_name(path.name)


def why_not_an_event_file_name(name: str) -> str | None:
    """None for a .csv / .csv.gz name; otherwise why a file of that name is not read."""
    lower = name.lower()
    for suffix, compression in _UNSUPPORTED_COMPRESSIONS.items():
        if lower.endswith(suffix):
            return f"compressed with {compression}, which is not supported: decompress it or recompress it with gzip"
    if not is_event_file_name(name):
        return "not a .csv or .csv.gz file"
    return None


def discover_event_files(location: str | os.PathLike[str]) -> Discovery:
    """The event files at `location`, names taken literally.

    A path that exists is taken as named, glob characters included: a file is that file (whatever
    its suffix), a folder gives every .csv / .csv.gz directly in it (suffixes in any case), and every
    other entry is reported with the reason it is skipped. Only a location that does not exist is a
    glob pattern (Python's glob, `**` included); its matches are then read literally too.
    """
    location = Path(location)
    if location.is_file():
        return Discovery([EventFile(location, location.name)], [])
    if location.is_dir():
        files, skipped = [], []
        for path in sorted(location.iterdir()):
            reason = _why_not_read(path)
            if reason is None:
                files.append(EventFile(path, path.name))
            else:
                skipped.append((path.name, reason))
        return Discovery(files, skipped)
    matches = sorted(Path(p) for p in glob.glob(str(location), recursive=True))
    files = [p for p in matches if p.is_file()]  # a file the pattern names explicitly is read, whatever its suffix
    skipped = [(str(p), _why_not_read(p) or "not a regular file") for p in matches if not p.is_file()]
    if not files:
        raise NoEventFilesError(f"No event file at {location}: the path does not exist and, read as a glob pattern, "
                                "matches no file. Check the path (or SEGMENTS_EVENTS).")
    root = Path(os.path.commonpath([p.parent for p in files]))
    return Discovery([EventFile(p, p.relative_to(root).as_posix()) for p in files], skipped)


class NoEventFilesError(Exception):
    """The location holds no event file: a usage problem, reported in one sentence by the CLI."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_lines_sql(path: Path, load_id: int, gzipped: bool) -> str:
    """Every physical line of a file as (load_id, line_number, line), in file order.

    One column, strict mode: blank lines are kept (as ''), and a line holding the delimiter
    byte stops the load with a message rather than being cut (a two-column or non-strict read
    silently drops blank lines or text). `path` must hold no glob character (see _literal_path).
    """
    return f"""
        select
            {load_id} as load_id,
            row_number() over () as line_number,
            coalesce(line, '') as line
        from read_csv(
            {_sql_string(str(path))},
            columns = {{'line': 'VARCHAR'}},
            delim = {_sql_string(_LINE_DELIMITER)}, quote = '', escape = '',
            header = false, auto_detect = false, strict_mode = true,
            compression = '{'gzip' if gzipped else 'none'}'
        )
    """


def landed_columns_sql(line: str, field: Callable[[int], str]) -> str:
    """The select list of LANDED_COLUMNS after load_id and line_number, from a line of text: NULL and
    its nine fields when the line splits plainly, the line and NULL fields otherwise. `field(i)` is
    the SQL of the line's i-th comma-separated field (1-based) in the engine that runs it."""
    plain = f"(position('\"' in {line}) = 0 and length({line}) - length(replace({line}, ',', '')) = 8)"
    columns = [f"case when {plain} then null else {line} end as line"]
    columns += [f"case when {plain} then {field(position)} end as {name}"
                for position, name in enumerate(LANDED_FIELD_COLUMNS, start=1)]
    return ",\n".join(columns)


def landed_rows_sql(table: str) -> str:
    """The rows of LANDED_COLUMNS for the checked lines of a DuckDB `table` (load_id, line_number, line)."""
    return f"""
        select load_id, line_number, {landed_columns_sql('line', lambda position: f'parts[{position}]')}
        from (select load_id, line_number, line, string_split(line, ',') as parts from {table})
    """


@contextmanager
def _literal_path(path: Path):
    """A path to `path` that DuckDB reads literally: DuckDB expands `*`, `?`, `[...]` in file names,
    so a name holding one is read through a symbolic link with a plain name."""
    if not re.search(r"[*?\[\]{}]", str(path)):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="segments-literal-")
    try:
        link = Path(folder) / "event-file"
        link.symlink_to(path.resolve())
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _lf_copy(path: Path, gzipped: bool):
    """A plain-text copy of `path` with CRLF line ends turned into LF (the lines themselves unchanged).

    DuckDB's reader refuses a file mixing CRLF and LF line ends (files concatenated by different
    tools); only such a file pays for this copy, in the temporary folder.
    """
    folder = tempfile.mkdtemp(prefix="segments-lf-")
    try:
        copy = Path(folder) / "event-file.csv"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as source, open(copy, "wb") as target:
            pending_cr = b""
            for block in iter(lambda: source.read(1 << 24), b""):
                block = pending_cr + block
                pending_cr = b"\r" if block.endswith(b"\r") else b""
                target.write(block[: len(block) - len(pending_cr)].replace(b"\r\n", b"\n"))
            target.write(pending_cr)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Conditions of the machine, not of the file: never a reason to quarantine a file (the CLI reports them).
_OPERATIONAL_ERRORS = ("No space left on device", "File too large", "Could not set lock", "Read-only file system",
                       "Out of Memory", "out of memory")


def _is_operational(error: Exception) -> bool:
    return any(marker in str(error) for marker in _OPERATIONAL_ERRORS)


def _explain_read_error(error: Exception) -> str:
    text = str(error)
    size = re.search(r"Maximum line size of (\d+) bytes exceeded\. Actual Size:\s*(\d+) bytes", text)
    if size:
        where = re.search(r"Line: (\d+)", text)
        return (f"line {where.group(1) if where else '?'} is {int(size.group(2)):,} bytes long, over DuckDB's "
                f"line-length cap of {int(size.group(1)):,} bytes (max_line_size): not a REES46 line")
    if "GZIP" in text or "gzip" in text:
        if "Unexpected end" in text:
            return "truncated gzip file (the compressed stream ends early)"
        return "not a valid gzip file"
    if "unicode" in text.lower() or "utf-8" in text.lower():
        where = re.search(r"Line: (\d+)", text)
        return "not UTF-8 text" + (f" (first bad byte on line {where.group(1)})" if where else "")
    if "Expected Number of Columns" in text:
        where = re.search(r"Line: (\d+)", text)
        return "binary data: the control character 0x1F" + (f" on line {where.group(1)}" if where else "")
    return f"cannot be read as text lines ({text.splitlines()[0]})"


# Redshift's widest varchar, in bytes (its bare `varchar` is varchar(256)).
class MixedLineEnds(Exception):
    """DuckDB cannot read the file as it is (CRLF and LF line ends mixed): read it again with lf_copy=True."""


def read_event_file(con: duckdb.DuckDBPyConnection, table: str, file: EventFile, load_id: int,
                    lf_copy: bool = False) -> tuple[bool, int]:
    """Read every line of `file` into the DuckDB `table` and check the file as a whole.

    Raises MixedLineEnds when DuckDB refuses the file's mix of line ends: the caller rolls back and
    calls again with `lf_copy` (a DuckDB error aborts the transaction, so the retry needs a new one).

    The one validation path of every backend. Raises EventFileError for a broken file; removes the
    header line when there is one; returns (has_header, number of lines kept). The caller owns the
    transaction: on error it rolls back, so nothing of the file stays in `table`.
    """
    gzipped = file.path.name.lower().endswith(".gz")
    try:
        if lf_copy:
            with _lf_copy(file.path, gzipped) as copy:
                con.execute(f"insert into {table} {_read_lines_sql(copy, load_id, False)}")
        else:
            with _literal_path(file.path) as path:
                con.execute(f"insert into {table} {_read_lines_sql(path, load_id, gzipped)}")
    except duckdb.Error as error:
        if _is_operational(error):
            raise
        if not lf_copy and "state machine reached an invalid state" in str(error):
            raise MixedLineEnds() from None
        raise EventFileError(file.name, _explain_read_error(error)) from None
    except (EOFError, gzip.BadGzipFile) as error:
        raise EventFileError(file.name, f"not a valid gzip file ({error})") from None
    has_header = _check_lines(con, table, load_id, file.name)
    if has_header:
        con.execute(f"delete from {table} where load_id = ? and line_number = 1", [load_id])
    line_count = con.execute(f"select count(*) from {table} where load_id = ?", [load_id]).fetchall()[0][0]
    return has_header, line_count


def _header_fields(line: str, delimiter: str) -> list[str]:
    """The fields of a header line as a CSV reader sees them (quotes removed), lower-cased."""
    return [value.strip().lower() for value in next(csv.reader([line], delimiter=delimiter), [])]


def _wrong_delimiter_message(name: str, char: str) -> str:
    shown = "\\t" if char == "\t" else char
    return (f"fields are separated by {name}s ('{shown}'), not commas: REES46 files are comma-separated; "
            "export the file again with commas")


def _check_lines(con: duckdb.DuckDBPyConnection, table: str, load_id: int, file_name: str) -> bool:
    """Refuse a file that is broken as a whole; return whether its first line is the header.

    The header may be quoted (RFC 4180). A file whose header or lines use a semicolon, tab or pipe
    instead of the comma is refused with that delimiter named.
    """
    non_blank = con.execute(
        f"select count(*) from {table} where load_id = ? and line <> ''", [load_id]
    ).fetchall()[0][0]
    if non_blank == 0:
        raise EventFileError(file_name, "empty file (no lines)")
    first = con.execute(f"select line from {table} where load_id = ? and line_number = 1", [load_id]).fetchall()
    first_line = first[0][0]
    has_header = _header_fields(first_line, ",") == list(EXPECTED_COLUMNS)
    if not has_header:
        for char, name in _OTHER_DELIMITERS.items():
            char = "\t" if char == "\\t" else char
            if _header_fields(first_line, char) == list(EXPECTED_COLUMNS):
                raise EventFileError(file_name, _wrong_delimiter_message(name, char))
    if not has_header and not _LOOKS_LIKE_EVENT.match(first_line):
        shown = first_line[:120] + ("..." if len(first_line) > 120 else "")
        raise EventFileError(
            file_name,
            f"unexpected header {shown!r}; expected {EXPECTED_HEADER!r} or no header line "
            "(is this a REES46 event file?)",
        )
    first_data_line = 1 if has_header else 0
    # One line with the nine comma-separated fields settles a sound file: a probe that stops at the
    # first (3 ms a file, against 270 ms for the counts below, which only a refused file needs).
    nine_fields = con.execute(
        f"""
        select count(*) from (
            select 1 from {table}
            where load_id = ? and line_number > ? and len(line) - len(replace(line, ',', '')) = 8
            limit 1
        ) as probe
        """,
        [load_id, first_data_line],
    ).fetchall()[0][0]
    if nine_fields:
        return has_header
    delimiters = {",": "comma", **{("\t" if c == "\\t" else c): n for c, n in _OTHER_DELIMITERS.items()}}
    counts = ", ".join(
        f"count(*) filter (where len(line) - len(replace(line, {_sql_string(char)}, '')) = 8)" for char in delimiters
    )
    data_lines, common_count, *nine_field_lines = con.execute(
        f"""
        select count(*), mode(len(line) - len(replace(line, ',', '')) + 1), {counts}
        from {table} where load_id = ? and line_number > ?
        """,
        [load_id, first_data_line],
    ).fetchall()[0]
    if data_lines == 0:
        raise EventFileError(file_name, "empty file (a header but no events)")
    # No line splits in nine on commas: name the delimiter that would split them, if one does.
    by_delimiter = dict(zip(delimiters.items(), nine_field_lines))
    (char, name), other = max(by_delimiter.items(), key=lambda item: item[1])
    if other > 0:
        raise EventFileError(file_name, _wrong_delimiter_message(name, char))
    raise EventFileError(
        file_name,
        f"no line has the {len(EXPECTED_COLUMNS)} REES46 fields (lines have {common_count} fields)",
    )


@contextmanager
def checked_lines(file: EventFile, load_id: int):
    """`file` read and checked by an in-memory DuckDB (`read_event_file`), for the warehouses that
    receive the lines from outside: yields (reader, has_header, line_count), the lines in the
    reader's table `lines` (load_id, line_number, line). Raises EventFileError for a broken file."""
    with tempfile.TemporaryDirectory(prefix="segments-load-") as spill:
        with duckdb.connect(":memory:", config={"temp_directory": spill,
                                               "memory_limit": settings.duckdb_memory_limit()}) as reader:
            reader.execute("create table lines (load_id integer, line_number bigint, line varchar)")
            try:
                has_header, line_count = read_event_file(reader, "lines", file, load_id)
            except MixedLineEnds:
                reader.execute("delete from lines")
                has_header, line_count = read_event_file(reader, "lines", file, load_id, lf_copy=True)
            yield reader, has_header, line_count
