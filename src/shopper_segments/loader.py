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
- A name already loaded with *different* content stops the run: landed files are
  immutable; corrections arrive as new files (their already-known rows are de-duplicated).
- Each file is loaded in one transaction: a failure or a killed run leaves no half file.

Backends (`RawWarehouse`): the project's DuckDB file (`DuckDBWarehouse`) and PostgreSQL
(`PostgresWarehouse`). Both read and check a file the same way, with DuckDB (`read_event_file`);
PostgreSQL then receives the checked lines by `COPY ... FROM STDIN`. On Redshift the same two
tables are filled by `COPY` from S3 (docs/deployment.md); a Redshift backend would subclass
`RawWarehouse` like `PostgresWarehouse` does.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

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
EVENT_FILE_SUFFIXES = (".csv", ".csv.gz")
# A line that starts like an event (a date) rather than like a header.
_LOOKS_LIKE_EVENT = re.compile(r"^\d{4}-\d{2}-\d{2}")
# Lines are read whole: this byte never occurs in REES46 text, so DuckDB does not split them.
_LINE_DELIMITER = "\x1f"


class EventFileError(Exception):
    """A file that cannot be loaded as a whole. The message names the file and the problem."""

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

    def summary(self) -> str:
        lines = sum(count for _, count in self.loaded)
        return (
            f"loaded {len(self.loaded)} file(s) ({lines:,} lines), "
            f"{len(self.skipped)} already loaded, {len(self.duplicates)} duplicate content"
        )


def discover_event_files(location: str | os.PathLike[str]) -> list[EventFile]:
    """The event files at `location`: one file, every .csv/.csv.gz directly in a folder, or a glob."""
    location = Path(location)
    if location.is_file():
        return [EventFile(location, location.name)]
    if location.is_dir():
        paths = [p for p in location.iterdir() if p.is_file() and p.name.endswith(EVENT_FILE_SUFFIXES)]
        return [EventFile(p, p.name) for p in sorted(paths)]
    matches = sorted(Path(p) for p in glob.glob(str(location)) if Path(p).is_file())
    if not matches:
        raise SystemExit(f"No event files at {location}")
    root = Path(os.path.commonpath([p.parent for p in matches]))
    return [EventFile(p, p.relative_to(root).as_posix()) for p in matches]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_lines_sql(path: Path, load_id: int) -> str:
    """Every physical line of a file as (load_id, line_number, line), in file order.

    One column, strict mode: blank lines are kept (as ''), and a line holding the delimiter
    byte stops the load with a message rather than being cut (a two-column or non-strict read
    silently drops blank lines or text).
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
            header = false, auto_detect = false, strict_mode = true
        )
    """


def _explain_read_error(error: Exception) -> str:
    text = str(error)
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


def _raw_tables_ddl(schema: str) -> list[str]:
    """The two landing tables; the same DDL runs on DuckDB and PostgreSQL."""
    return [
        f"create schema if not exists {schema}",
        f"""
        create table if not exists {schema}.event_files (
            load_id integer primary key,
            file_name varchar not null,
            content_sha256 varchar not null,
            file_bytes bigint not null,
            has_header boolean,
            line_count bigint not null,
            status varchar not null,
            duplicate_of_load_id integer,
            loaded_at timestamp not null
        )""",
        f"""
        create table if not exists {schema}.event_lines (
            load_id integer not null,
            line_number bigint not null,
            line varchar not null
        )""",
    ]


def read_event_file(con: duckdb.DuckDBPyConnection, table: str, file: EventFile, load_id: int) -> tuple[bool, int]:
    """Read every line of `file` into the DuckDB `table` and check the file as a whole.

    The one validation path of every backend. Raises EventFileError for a broken file; removes the
    header line when there is one; returns (has_header, number of lines kept). The caller owns the
    transaction: on error it rolls back, so nothing of the file stays in `table`.
    """
    try:
        con.execute(f"insert into {table} {_read_lines_sql(file.path, load_id)}")
    except duckdb.Error as error:
        raise EventFileError(file.name, _explain_read_error(error)) from None
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

    def ensure_raw_tables(self) -> None:
        for statement in _raw_tables_ddl(self.schema):
            self._execute(statement)

    def known_files(self) -> list[tuple[int, str, str, str]]:
        """(load_id, file_name, sha256, status) of every file already landed."""
        return self._query(
            f"select load_id, file_name, content_sha256, status from {self.schema}.event_files order by load_id"
        )

    def next_load_id(self) -> int:
        return self._query(f"select coalesce(max(load_id), 0) + 1 from {self.schema}.event_files")[0][0]

    def record_duplicate(self, file: EventFile, sha: str, size: int, original_load_id: int) -> None:
        self._execute(
            f"insert into {self.schema}.event_files values (?, ?, ?, ?, null, 0, 'duplicate_content', ?, ?)",
            [self.next_load_id(), file.name, sha, size, original_load_id, _now()],
        )

    def _file_row_sql(self) -> str:
        return f"insert into {self.schema}.event_files values (?, ?, ?, ?, ?, ?, 'loaded', null, ?)"


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
        self.con.execute("begin transaction")
        try:
            has_header, line_count = read_event_file(self.con, f"{self.schema}.event_lines", file, load_id)
            self.con.execute(self._file_row_sql(), [load_id, file.name, sha, size, has_header, line_count, _now()])
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            raise
        return line_count


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
        with tempfile.TemporaryDirectory(prefix="segments-load-") as spill:
            with duckdb.connect(":memory:", config={"temp_directory": spill,
                                                   "memory_limit": settings.duckdb_memory_limit()}) as reader:
                reader.execute("create table lines (load_id integer, line_number bigint, line varchar)")
                has_header, line_count = read_event_file(reader, "lines", file, load_id)
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
    """The landing tables of `target`: the DuckDB file, or PostgreSQL."""
    if target == "duckdb":
        return DuckDBWarehouse(duckdb_path, schema)
    if target == "postgres":
        return PostgresWarehouse(target, schema)
    raise SystemExit(
        f"`segments load` lands files in DuckDB or PostgreSQL. On {target}, land them with COPY from S3 "
        "into the same two raw tables (docs/deployment.md, 'Landing files in Redshift')."
    )


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def _check_lines(con: duckdb.DuckDBPyConnection, table: str, load_id: int, file_name: str) -> bool:
    """Refuse a file that is broken as a whole; return whether its first line is the header."""
    non_blank = con.execute(
        f"select count(*) from {table} where load_id = ? and line <> ''", [load_id]
    ).fetchall()[0][0]
    if non_blank == 0:
        raise EventFileError(file_name, "empty file (no lines)")
    first = con.execute(f"select line from {table} where load_id = ? and line_number = 1", [load_id]).fetchall()
    first_line = first[0][0]
    has_header = first_line.strip().lower() == EXPECTED_HEADER
    if not has_header and not _LOOKS_LIKE_EVENT.match(first_line):
        shown = first_line[:120] + ("..." if len(first_line) > 120 else "")
        raise EventFileError(
            file_name,
            f"unexpected header {shown!r}; expected {EXPECTED_HEADER!r} or no header line "
            "(is this a REES46 event file?)",
        )
    data_lines, nine_field_lines, common_count = con.execute(
        f"""
        select
            count(*),
            count(*) filter (where len(line) - len(replace(line, ',', '')) = 8),
            mode(len(line) - len(replace(line, ',', '')) + 1)
        from {table} where load_id = ? and line_number > ?
        """,
        [load_id, 1 if has_header else 0],
    ).fetchall()[0]
    if data_lines == 0:
        raise EventFileError(file_name, "empty file (a header but no events)")
    if nine_field_lines == 0:
        raise EventFileError(
            file_name,
            f"no line has the {len(EXPECTED_COLUMNS)} REES46 fields (lines have {common_count} fields)",
        )
    return has_header


def load_event_files(warehouse: RawWarehouse, location: str | os.PathLike[str], log=print) -> LoadResult:
    """Land every new file at `location`; stop at the first broken file (earlier files stay loaded)."""
    result = LoadResult()
    files = discover_event_files(location)
    if not files:
        raise SystemExit(f"No .csv or .csv.gz event files in {location}")
    for file in files:
        known = warehouse.known_files()
        by_name = {name: (load_id, sha) for load_id, name, sha, _ in known}
        by_sha = {sha: name for _, name, sha, status in known if status == "loaded"}
        size = file.path.stat().st_size
        sha = file_sha256(file.path)
        if file.name in by_name:
            if by_name[file.name][1] == sha:
                result.skipped.append(file.name)
                continue
            raise EventFileError(
                file.name,
                f"already loaded (load {by_name[file.name][0]}) with different content. Landed files are "
                "immutable: deliver corrections under a new file name (rows already loaded are de-duplicated).",
            )
        if sha in by_sha:
            original = by_sha[sha]
            warehouse.record_duplicate(file, sha, size, next(lid for lid, n, *_ in known if n == original))
            result.duplicates.append((file.name, original))
            log(f"  {file.name}: same content as {original}, not stored again")
            continue
        lines = warehouse.load_file(file, sha, size)
        result.loaded.append((file.name, lines))
        log(f"  {file.name}: {lines:,} lines")
    return result
