"""The raw landing tables of each warehouse (`RawWarehouse`): the project's DuckDB file
(`DuckDBWarehouse`) and PostgreSQL (`PostgresWarehouse`); Redshift's is in `redshift_landing`.

Each one creates `raw.event_files` and `raw.event_lines`, records a file's status and stores its
checked lines, split as `files.landed_columns_sql` says, in one transaction; the rules of what to
land are `loader`'s. All read and check a file the same way, with DuckDB (`files.read_event_file`);
PostgreSQL then receives the split lines by `COPY ... FROM STDIN`.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from .. import settings
from .files import (
    LANDED_COLUMNS,
    LANDED_FIELD_COLUMNS,
    Discovery,
    EventFile,
    EventFileError,
    MixedLineEnds,
    checked_lines,
    discover_event_files,
    landed_rows_sql,
    read_event_file,
)


REDSHIFT_MAX_VARCHAR = 65535


def _raw_tables_ddl(schema: str, flavour: str = "duckdb") -> list[str]:
    """The two landing tables; the same DDL runs on DuckDB and PostgreSQL, and on Redshift with
    explicit text widths (the Redshift form runs on PostgreSQL too, which the tests do)."""

    def text(width: int) -> str:
        return f"varchar({width})" if flavour == "redshift" else "varchar"

    fields = ",\n            ".join(f"{name} {text(REDSHIFT_MAX_VARCHAR)}" for name in LANDED_FIELD_COLUMNS)

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
            line {text(REDSHIFT_MAX_VARCHAR)},
            {fields}
        )""",
    ]
    if flavour != "redshift":
        # Warehouses landed before quarantine existed get the column, and those landed before lines were
        # split at landing get the field columns (their lines keep their text, which staging splits).
        # Redshift's landing is newer than both, and has no `add column if not exists`.
        statements.insert(2, f"alter table {schema}.event_files add column if not exists reason varchar")
        statements += [f"alter table {schema}.event_lines add column if not exists {name} varchar"
                       for name in LANDED_FIELD_COLUMNS]
        statements.append(f"alter table {schema}.event_lines alter column line drop not null")
    return statements


class RawWarehouse:
    """Where `load_event_files` lands files: the two raw tables of one warehouse.

    Subclasses provide `_query` / `_execute` (SQL written with `?` placeholders) and `load_file`.
    """

    schema: str

    def _query(self, sql: str, params: list | None = None) -> list[tuple]:
        raise NotImplementedError

    def limits_note(self) -> str:
        """The limits this warehouse works within, for the landing line (empty: none of ours)."""
        return ""

    def _execute(self, sql: str, params: list | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def load_file(self, file: EventFile, sha: str, size: int) -> int:
        """Store every line of `file` in one transaction; return the number of event lines stored."""
        raise NotImplementedError

    def refresh_statistics(self) -> None:
        """After new lines are landed: what the engine's planner needs to know of them (DuckDB keeps its
        statistics up to date by itself)."""

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

    # A file's lines are read and checked here (a temporary table, in memory or the DuckDB temp folder),
    # then stored split into the landing table.
    _CHECKED_LINES = "segments_checked_lines"

    def __init__(self, path: Path, schema: str = "raw"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path), config={"memory_limit": settings.duckdb_memory_limit()})
        self.schema = schema
        self.ensure_raw_tables()
        self.con.execute(f"create temporary table if not exists {self._CHECKED_LINES} "
                         "(load_id integer, line_number bigint, line varchar)")

    def close(self) -> None:
        self.con.close()

    def limits_note(self) -> str:
        limit = self._query("select current_setting('memory_limit')")[0][0]
        return f" (DuckDB memory limit {limit}: SEGMENTS_DUCKDB_MEMORY_LIMIT)"

    def _query(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: list | None = None) -> None:
        self.con.execute(sql, params)

    def load_file(self, file: EventFile, sha: str, size: int) -> int:
        load_id = self.next_load_id()
        for lf_copy in (False, True):
            self.con.execute("begin transaction")
            try:
                has_header, line_count = read_event_file(self.con, self._CHECKED_LINES, file, load_id, lf_copy)
                self.con.execute(f"insert into {self.schema}.event_lines ({', '.join(LANDED_COLUMNS)}) "
                                 f"{landed_rows_sql(self._CHECKED_LINES)}")
                self.con.execute(f"delete from {self._CHECKED_LINES}")
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

    def refresh_statistics(self) -> None:
        # PostgreSQL learns of COPYed rows only when autovacuum next analyses the table. Until then the
        # planner took the freshly landed lines for one row and anti-joined 235,000 of them to the stored
        # events in a nested loop (stg_events: 50 s instead of 12 s on the demo delivery).
        for table in ("event_lines", "event_files"):
            self._execute(f"analyze {self.schema}.{table}")

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
            # COPY text format: tab-separated, backslash escapes, \N for NULL; built by DuckDB, not row by row
            # in Python, from the rows DuckDB lands (files.landed_rows_sql).
            text_columns = " || chr(9) || ".join(_copy_text(name) for name in LANDED_COLUMNS[2:])
            rows = reader.execute(
                f"""
                select load_id || chr(9) || line_number || chr(9) || {text_columns} || chr(10)
                from ({landed_rows_sql('lines')})
                order by line_number
                """
            )
            try:
                with self.con.cursor() as cur:
                    cur.copy_expert(
                        f"copy {self.schema}.event_lines ({', '.join(LANDED_COLUMNS)}) from stdin",
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


def _copy_text(column: str) -> str:
    """A text column in PostgreSQL's COPY text format (DuckDB SQL): backslash escapes, \\N for NULL."""
    escaped = (rf"replace(replace(replace(replace({column}, '\', '\\'), chr(9), '\t'), chr(10), '\n'), "
               rf"chr(13), '\r')")
    return rf"coalesce({escaped}, '\N')"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
