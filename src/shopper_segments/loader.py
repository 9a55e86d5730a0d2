"""Land raw REES46 event files in the warehouse, one file at a time, exactly once.

This is the project's `COPY`: every line of every file goes, untouched, into
`raw.event_lines` (load id, line number, text), and every file gets a row in
`raw.event_files` (name, content hash, size, header, status). Parsing and cleaning are
dbt's job (`models/staging`); the loader only refuses files that are broken as a whole
(empty, not gzip, truncated, not UTF-8, another dataset's header, no line with the nine
fields). Row-level problems never stop a load: they become rejected rows in dbt.

Rules, each one documented in docs/data_quality.md:
- A file is identified by its name (its path relative to the folder being loaded).
- A name already loaded with the same content is skipped: loading is idempotent.
- The same content under a new name is recorded (status `duplicate_content`) but its
  lines are not stored again, so nothing is counted twice.
- A broken file, or a name already loaded with *different* content (landed files are immutable;
  corrections arrive as new files), is quarantined: recorded with its reason (status
  `quarantined`), none of its lines stored, and the other files are landed. The next run retries
  it if its content changed, and reports it as still quarantined if not.
- Each file is loaded in one transaction: a failure or a killed run leaves no half file.
- Names are literal: a file or folder that exists is taken as named (`ev[1].csv` is that file);
  only a location that does not exist is read as a glob pattern.

Backends (`RawWarehouse`): the project's DuckDB file (`DuckDBWarehouse`), PostgreSQL
(`PostgresWarehouse`) and Redshift (`redshift_landing.RedshiftWarehouse`). All read and check a file
the same way, with DuckDB (`read_event_file`); PostgreSQL then receives the checked lines by
`COPY ... FROM STDIN`, Redshift by `COPY` from S3 of a numbered copy (docs/deployment.md).
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb

from . import settings

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
class LoadResult:
    loaded: list[tuple[str, int]] = field(default_factory=list)  # (file name, lines stored)
    skipped: list[str] = field(default_factory=list)  # already loaded, same content
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file name, same content as)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason), new or still
    not_event_files: list[tuple[str, str]] = field(default_factory=list)  # (entry, why it was not read)

    def summary(self) -> str:
        lines = sum(count for _, count in self.loaded)
        return (
            f"loaded {len(self.loaded)} file(s) ({lines:,} lines), "
            f"{len(self.skipped)} already loaded, {len(self.duplicates)} duplicate content, "
            f"{len(self.quarantined)} quarantined, {len(self.not_event_files)} not event files"
        )


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
REDSHIFT_MAX_VARCHAR = 65535


def _raw_tables_ddl(schema: str, flavour: str = "duckdb") -> list[str]:
    """The two landing tables; the same DDL runs on DuckDB and PostgreSQL, and on Redshift with
    explicit text widths (the Redshift form runs on PostgreSQL too, which the tests do)."""

    def text(width: int) -> str:
        return f"varchar({width})" if flavour == "redshift" else "varchar"

    statements = [
        f"create schema if not exists {schema}",
        f"""
        create table if not exists {schema}.event_files (
            load_id integer primary key,
            file_name {text(1024)} not null,
            content_sha256 {text(64)} not null,
            file_bytes bigint not null,
            has_header boolean,
            line_count bigint not null,
            status {text(32)} not null,
            duplicate_of_load_id integer,
            loaded_at timestamp not null,
            reason {text(REDSHIFT_MAX_VARCHAR)}
        )""",
        f"""
        create table if not exists {schema}.event_lines (
            load_id integer not null,
            line_number bigint not null,
            line {text(REDSHIFT_MAX_VARCHAR)} not null
        )""",
    ]
    if flavour != "redshift":
        # Warehouses landed before quarantine existed get the column (Redshift's landing is newer than that,
        # and has no `add column if not exists`).
        statements.insert(2, f"alter table {schema}.event_files add column if not exists reason varchar")
    return statements


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


class RawWarehouse:
    """Where `load_event_files` lands files: the two raw tables of one warehouse.

    Subclasses provide `_query` / `_execute` (SQL written with `?` placeholders) and `load_file`.
    """

    schema: str

    def _query(self, sql: str, params: list | None = None) -> list[tuple]:
        raise NotImplementedError

    def _execute(self, sql: str, params: list | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def load_file(self, file: EventFile, sha: str, size: int) -> int:
        """Store every line of `file` in one transaction; return the number of event lines stored."""
        raise NotImplementedError

    flavour = "duckdb"

    def discover(self, location: str | os.PathLike[str]) -> Discovery:
        """The event files at `location` (a local file, folder or glob; the Redshift backend adds S3)."""
        return discover_event_files(location)

    def ensure_raw_tables(self) -> None:
        for statement in _raw_tables_ddl(self.schema, self.flavour):
            self._execute(statement)

    def known_files(self) -> list[tuple[int, str, str, str, str | None]]:
        """(load_id, file_name, sha256, status, reason) of every file recorded, in load order."""
        return self._query(
            f"select load_id, file_name, content_sha256, status, reason from {self.schema}.event_files "
            "order by load_id"
        )

    def next_load_id(self) -> int:
        return self._query(f"select coalesce(max(load_id), 0) + 1 from {self.schema}.event_files")[0][0]

    def record_duplicate(self, file: EventFile, sha: str, size: int, original_load_id: int) -> None:
        self._execute(
            f"insert into {self.schema}.event_files ({_FILE_COLUMNS}) "
            "values (?, ?, ?, ?, null, 0, 'duplicate_content', ?, ?, null)",
            [self.next_load_id(), file.name, sha, size, original_load_id, _now()],
        )

    def record_quarantine(self, file: EventFile, sha: str, size: int, reason: str) -> int:
        """Record a file that is not landed, with the reason; none of its lines is stored."""
        load_id = self.next_load_id()
        self._execute(
            f"insert into {self.schema}.event_files ({_FILE_COLUMNS}) "
            "values (?, ?, ?, ?, null, 0, 'quarantined', null, ?, ?)",
            [load_id, file.name, sha, size, _now(), reason],
        )
        return load_id

    def _file_row_sql(self) -> str:
        return (f"insert into {self.schema}.event_files ({_FILE_COLUMNS}) "
                "values (?, ?, ?, ?, ?, ?, 'loaded', null, ?, null)")


_FILE_COLUMNS = ("load_id, file_name, content_sha256, file_bytes, has_header, line_count, status, "
                 "duplicate_of_load_id, loaded_at, reason")


class DuckDBWarehouse(RawWarehouse):
    """The raw landing tables inside the project's DuckDB file."""

    def __init__(self, path: Path, schema: str = "raw"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path), config={"memory_limit": settings.duckdb_memory_limit()})
        self.schema = schema
        self.ensure_raw_tables()

    def close(self) -> None:
        self.con.close()

    def _query(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: list | None = None) -> None:
        self.con.execute(sql, params)

    def load_file(self, file: EventFile, sha: str, size: int) -> int:
        load_id = self.next_load_id()
        for lf_copy in (False, True):
            self.con.execute("begin transaction")
            try:
                has_header, line_count = read_event_file(self.con, f"{self.schema}.event_lines", file, load_id,
                                                         lf_copy)
                self.con.execute(self._file_row_sql(), [load_id, file.name, sha, size, has_header, line_count,
                                                        _now()])
                self.con.execute("commit")
                return line_count
            except BaseException as error:
                try:
                    self.con.execute("rollback")
                except duckdb.Error:
                    pass  # an invalidated transaction (e.g. disk full) is rolled back already: keep the first error
                if not isinstance(error, MixedLineEnds):
                    raise
        raise AssertionError("unreachable: the LF copy never raises MixedLineEnds")


class _CopyStream:
    """A read()-able stream of COPY text rows, pulled batch by batch from a DuckDB result."""

    def __init__(self, result: duckdb.DuckDBPyConnection, batch_rows: int = 50_000):
        self._result = result
        self._batch_rows = batch_rows
        self._buffer = b""
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes; an empty result means the end of the data."""
        if self._position >= len(self._buffer):
            rows = self._result.fetchmany(self._batch_rows)
            self._buffer = "".join(row[0] for row in rows).encode("utf-8")
            self._position = 0
        end = len(self._buffer) if size < 0 else self._position + size
        chunk = self._buffer[self._position:end]
        self._position += len(chunk)
        return chunk


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


class PostgresWarehouse(RawWarehouse):
    """The raw landing tables in PostgreSQL (the stand-in for Redshift that runs here).

    A file is read and checked by an in-memory DuckDB exactly as for the DuckDB warehouse
    (`read_event_file`), then its lines are streamed by `COPY ... FROM STDIN`; lines and file row
    are committed together, one transaction per file.
    """

    def __init__(self, target: str = "postgres", schema: str = "raw", connection=None):
        from .connections import connect

        self.con = connection if connection is not None else connect(target)
        self.schema = schema
        self.ensure_raw_tables()

    def close(self) -> None:
        self.con.close()

    def _query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.con.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            rows = cur.fetchall()
        self.con.commit()
        return rows

    def _execute(self, sql: str, params: list | None = None) -> None:
        with self.con.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
        self.con.commit()

    def load_file(self, file: EventFile, sha: str, size: int) -> int:
        load_id = self.next_load_id()
        with checked_lines(file, load_id) as (reader, has_header, line_count):
            # COPY text format: tab-separated, backslash escapes; built by DuckDB, not row by row in Python.
            rows = reader.execute(
                r"""
                select
                    load_id || chr(9) || line_number || chr(9)
                    || replace(replace(replace(replace(line, '\', '\\'), chr(9), '\t'), chr(10), '\n'),
                               chr(13), '\r')
                    || chr(10)
                from lines
                order by line_number
                """
            )
            try:
                with self.con.cursor() as cur:
                    cur.copy_expert(
                        f"copy {self.schema}.event_lines (load_id, line_number, line) from stdin",
                        _CopyStream(rows),
                        size=1 << 20,
                    )
                    cur.execute(
                        self._file_row_sql().replace("?", "%s"),
                        [load_id, file.name, sha, size, has_header, line_count, _now()],
                    )
                self.con.commit()
            except BaseException as error:
                self.con.rollback()
                if type(error).__name__ == "DataError":  # e.g. a NUL byte, which PostgreSQL text cannot hold
                    raise EventFileError(file.name, f"cannot be stored in PostgreSQL ({error})") from None
                raise
        return line_count


def open_raw_warehouse(target: str, duckdb_path: Path, schema: str) -> RawWarehouse:
    """The landing tables of `target`: the DuckDB file, PostgreSQL, or Redshift (COPY from S3)."""
    if target == "duckdb":
        return DuckDBWarehouse(duckdb_path, schema)
    if target == "postgres":
        return PostgresWarehouse(target, schema)
    if target == "redshift":
        from .redshift_landing import RedshiftWarehouse

        return RedshiftWarehouse.from_environment(target, schema)
    raise SystemExit(f"`segments load` lands files in duckdb, postgres or redshift, not {target!r}.")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


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
    delimiters = {",": "comma", **{("\t" if c == "\\t" else c): n for c, n in _OTHER_DELIMITERS.items()}}
    counts = ", ".join(
        f"count(*) filter (where len(line) - len(replace(line, {_sql_string(char)}, '')) = 8)" for char in delimiters
    )
    data_lines, common_count, *nine_field_lines = con.execute(
        f"""
        select count(*), mode(len(line) - len(replace(line, ',', '')) + 1), {counts}
        from {table} where load_id = ? and line_number > ?
        """,
        [load_id, 1 if has_header else 0],
    ).fetchall()[0]
    if data_lines == 0:
        raise EventFileError(file_name, "empty file (a header but no events)")
    by_delimiter = dict(zip(delimiters.items(), nine_field_lines))
    if by_delimiter[(",", "comma")] == 0:
        (char, name), other = max(by_delimiter.items(), key=lambda item: item[1])
        if other > 0:
            raise EventFileError(file_name, _wrong_delimiter_message(name, char))
        raise EventFileError(
            file_name,
            f"no line has the {len(EXPECTED_COLUMNS)} REES46 fields (lines have {common_count} fields)",
        )
    return has_header


def load_event_files(warehouse: RawWarehouse, location: str | os.PathLike[str], log=print) -> LoadResult:
    """Land every new file at `location`. A broken file is quarantined and the others are landed.

    Per name, the newest record decides: a file already landed with the same content is skipped; a
    file quarantined with the same content is still quarantined (reported again, not recorded
    again); a changed file is tried again. A name landed with other content is quarantined.
    """
    result = LoadResult()
    discovery = warehouse.discover(location)
    for name, reason in discovery.skipped:
        result.not_event_files.append((name, reason))
        log(f"  {name}: not read: {reason}")
    if not discovery.files:
        raise NoEventFilesError(f"No .csv or .csv.gz event file in {location}: put the files there or point "
                                "--events (or SEGMENTS_EVENTS) at them.")
    for file in discovery.files:
        with discovery.fetch(file):
            _land_one(warehouse, file, result, log)
    return result


def _land_one(warehouse: RawWarehouse, file: EventFile, result: LoadResult, log) -> None:
    """The rules above for one file, readable at `file.path`; the outcome goes into `result`."""
    known = warehouse.known_files()
    landed = {name: (load_id, sha) for load_id, name, sha, status, _ in known if status != "quarantined"}
    quarantined = {name: (load_id, sha, reason) for load_id, name, sha, status, reason in known
                   if status == "quarantined"}
    first_load_of = {}
    for load_id, name, sha, status, _ in known:
        if status == "loaded":
            first_load_of.setdefault(sha, (load_id, name))
    size = file.path.stat().st_size
    sha = file_sha256(file.path)
    if file.name in landed and landed[file.name][1] == sha:
        result.skipped.append(file.name)
        return
    previous = quarantined.get(file.name)
    if previous and previous[1] == sha and previous[0] > landed.get(file.name, (0,))[0]:
        reason = f"still quarantined, content unchanged since load {previous[0]}: {previous[2]}"
        result.quarantined.append((file.name, reason))
        log(f"  {file.name}: {reason}")
        return
    if file.name in landed:
        reason = (f"already loaded (load {landed[file.name][0]}) with different content. Landed files are "
                  "immutable: deliver corrections under a new file name (rows already loaded are "
                  "de-duplicated), or put the original content back.")
        _quarantine(warehouse, file, sha, size, reason, result, log)
        return
    if sha in first_load_of:
        original_load_id, original = first_load_of[sha]
        warehouse.record_duplicate(file, sha, size, original_load_id)
        result.duplicates.append((file.name, original))
        log(f"  {file.name}: same content as {original}, not stored again")
        return
    try:
        lines = warehouse.load_file(file, sha, size)
    except EventFileError as error:
        _quarantine(warehouse, file, sha, size, error.problem, result, log)
        return
    result.loaded.append((file.name, lines))
    log(f"  {file.name}: {lines:,} lines")


def _quarantine(warehouse: RawWarehouse, file: EventFile, sha: str, size: int, reason: str, result: LoadResult,
                log) -> None:
    load_id = warehouse.record_quarantine(file, sha, size, reason)
    result.quarantined.append((file.name, reason))
    log(f"  {file.name}: quarantined (load {load_id}): {reason}")
