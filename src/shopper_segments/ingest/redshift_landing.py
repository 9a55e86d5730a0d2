"""`segments load` on Amazon Redshift: new event files from S3, landed by `COPY`, one transaction per file.

The rules are the loader's (shopper_segments.ingest.loader): a file is identified by its name (its key
relative to the prefix), a name already landed with the same SHA-256 is skipped, the same content
under a new name is recorded as `duplicate_content`, a broken or rewritten file is quarantined, and
each file is landed in one transaction, so nothing is ever half-landed. Per new file:

1. the object is downloaded to a temporary folder and read and checked by an in-memory DuckDB,
   exactly as on DuckDB and PostgreSQL (`files.checked_lines`): one validation path everywhere;
2. its lines are written numbered (`line_number<0x1F>line`, gzip), because Redshift's parallel
   `COPY` keeps no line order, and uploaded next to the lake (`SEGMENTS_S3_STAGING_PREFIX`, by default
   `_segments_staging/` under the events prefix, which discovery never reads);
3. one transaction: a temporary stage table, `COPY` of the numbered object with the IAM role of
   `SEGMENTS_REDSHIFT_COPY_ROLE`, a check that every line arrived once, the lines (split into their
   fields as every backend lands them: `files.landed_columns_sql`) and the file's row into
   `raw.event_lines` / `raw.event_files`; then the numbered object is deleted.

Every statement comes from `LandingStatements`. What runs here: the whole path on the PostgreSQL
server of the tests with the S3 `COPY` replaced by a local `COPY FROM STDIN` of the same numbered
object, S3 through moto, and every statement sent parsed with sqlfluff's redshift dialect
(tests/pytest/test_redshift_landing.py). The S3 `COPY` itself cannot run without a cluster.

boto3 (requirements/warehouses.txt, the Redshift driver's own dependency) is imported only here,
so a DuckDB installation never needs it.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .connections import quote
from .files import (
    LANDED_COLUMNS,
    Discovery,
    EventFile,
    EventFileError,
    NoEventFilesError,
    _sql_string,
    checked_lines,
    discover_event_files,
    landed_columns_sql,
    why_not_an_event_file_name,
)
from .warehouses import REDSHIFT_MAX_VARCHAR, PostgresWarehouse, _now

S3_SCHEME = "s3://"
STAGING_FOLDER = "_segments_staging/"
COPY_ROLE_VARIABLE = "SEGMENTS_REDSHIFT_COPY_ROLE"
STAGING_VARIABLE = "SEGMENTS_S3_STAGING_PREFIX"
# Between the line number and the line: a byte the loader refuses inside a line (files._LINE_DELIMITER).
NUMBER_DELIMITER = "\x1f"


def is_s3_url(location) -> bool:
    return str(location).startswith(S3_SCHEME)


@dataclass(frozen=True)
class S3Location:
    """`s3://bucket/key`: an object, or a prefix (a "folder") when the key is empty or ends with '/'."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not is_s3_url(url) or not url[len(S3_SCHEME):].split("/", 1)[0]:
            raise SystemExit(f"Not an S3 location: {url!r} (expected s3://bucket/prefix/).")
        bucket, _, key = url[len(S3_SCHEME):].partition("/")
        return cls(bucket, key)

    @property
    def url(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, self.key + name)


class S3Store:
    """The S3 calls landing needs: list a prefix, download, upload, delete (boto3)."""

    def __init__(self, client=None):
        if client is None:
            try:
                import boto3
            except ImportError:
                raise SystemExit("Landing from S3 needs boto3: install requirements/warehouses.txt "
                                 "(the container image has it).") from None
            client = boto3.client("s3")
        self.client = client

    def list(self, prefix: S3Location) -> tuple[list[tuple[str, int]], list[str]]:
        """(name, size) of the objects directly under `prefix`, and its sub-folders' names."""
        objects, folders = [], []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=prefix.bucket, Prefix=prefix.key, Delimiter="/")
        for page in pages:
            objects += [(item["Key"][len(prefix.key):], item["Size"]) for item in page.get("Contents", [])]
            folders += [item["Prefix"][len(prefix.key):] for item in page.get("CommonPrefixes", [])]
        return sorted(o for o in objects if o[0]), sorted(folders)

    def exists(self, location: S3Location) -> bool:
        found = self.client.list_objects_v2(Bucket=location.bucket, Prefix=location.key, MaxKeys=1)
        return any(item["Key"] == location.key for item in found.get("Contents", []))

    def download(self, location: S3Location, path: Path) -> None:
        self.client.download_file(location.bucket, location.key, str(path))

    def upload(self, path: Path, location: S3Location) -> None:
        self.client.upload_file(str(path), location.bucket, location.key)

    def read(self, location: S3Location) -> bytes:
        return self.client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()

    def delete(self, location: S3Location) -> None:
        self.client.delete_object(Bucket=location.bucket, Key=location.key)


def discover_s3_event_files(store: S3Store, url: str, download_dir: Path) -> Discovery:
    """The event files at an S3 prefix (its direct children, like a local folder) or one object.

    Each file's `path` is in `download_dir`; `Discovery.fetch` downloads it while it is processed
    and deletes it afterwards, so one file at a time is on disk.
    """
    location = S3Location.parse(url)
    if location.is_prefix:
        objects, folders = store.list(location)
        files, skipped = [], []
        for name, _ in objects:
            reason = why_not_an_event_file_name(name)
            if reason is None:
                files.append(EventFile(download_dir / f"{len(files)}-{PurePosixPath(name).name}", name))
            else:
                skipped.append((name, reason))
        skipped += [(folder, "a folder: sub-folders are not read (pass it as the prefix to load it)")
                    for folder in folders if folder != STAGING_FOLDER]
        sources = {file.name: location.child(file.name) for file in files}
    else:
        if not store.exists(location):
            raise NoEventFilesError(f"No event file at {url}: no such S3 object (a prefix ends with '/').")
        name = PurePosixPath(location.key).name
        files, skipped = [EventFile(download_dir / f"0-{name}", name)], []
        sources = {name: location}

    @contextmanager
    def fetch(file: EventFile):
        store.download(sources[file.name], file.path)
        try:
            yield
        finally:
            file.path.unlink(missing_ok=True)

    return Discovery(files, skipped, fetch)


@dataclass(frozen=True)
class LandingStatements:
    """Every SQL statement of one file's landing transaction on Redshift (the raw tables' DDL and the
    file bookkeeping are the loader's, `_raw_tables_ddl` with the redshift flavour and RawWarehouse)."""

    schema: str
    stage: str = "segments_event_lines_stage"

    def create_stage(self) -> str:
        return f"create temporary table {self.stage} (line_number bigint, line varchar({REDSHIFT_MAX_VARCHAR}))"

    def copy_from_s3(self, source: S3Location, iam_role: str) -> str:
        """COPY the numbered gzip object: split at the first 0x1F only (no escapes, no quotes), no NULL
        marker a line could hold, no error tolerated (a bad object fails the COPY, nothing lands)."""
        role = "default" if iam_role == "default" else _sql_string(iam_role)
        return (f"copy {self.stage} (line_number, line) from {_sql_string(source.url)} iam_role {role} "
                r"gzip delimiter '\037' null as '\000' maxerror 0 compupdate off statupdate off")

    def staged_lines(self) -> str:
        return f"select count(*), count(distinct line_number), min(line_number), max(line_number) from {self.stage}"

    def insert_lines(self, load_id: int) -> str:
        """The staged lines into the landing table, split as every backend lands them (files.landed_columns_sql)."""
        columns = landed_columns_sql("line", lambda position: f"split_part(line, ',', {position})")
        return (f"insert into {self.schema}.event_lines ({', '.join(LANDED_COLUMNS)}) "
                f"select {int(load_id)}, line_number, {columns} "
                f"from (select line_number, coalesce(line, '') as line from {self.stage}) as staged")

    def drop_stage(self) -> str:
        return f"drop table {self.stage}"


def write_numbered_lines(reader, path: Path, batch_rows: int = 50_000) -> None:
    """The checked lines as `line_number<0x1F>line` rows, gzip, in file order (what COPY reads)."""
    rows = reader.execute(
        f"select line_number || chr({ord(NUMBER_DELIMITER)}) || line || chr(10) from lines order by line_number")
    with gzip.open(path, "wb", compresslevel=1) as out:
        while batch := rows.fetchmany(batch_rows):
            out.write("".join(row[0] for row in batch).encode("utf-8"))


def landing_settings() -> tuple[str, str | None]:
    """(IAM role for COPY, staging prefix or None) from the environment; the role is required."""
    iam_role = os.environ.get(COPY_ROLE_VARIABLE, "").strip()
    if not iam_role:
        raise SystemExit(f"Landing on Redshift needs {COPY_ROLE_VARIABLE}: the ARN of the IAM role Redshift "
                         "assumes to read the S3 files (or `default`, the cluster's default role).")
    return iam_role, os.environ.get(STAGING_VARIABLE, "").strip() or None


class RedshiftWarehouse(PostgresWarehouse):
    """The raw landing tables in Redshift, filled by COPY from S3 (see the module docstring).

    The bookkeeping queries are PostgresWarehouse's (the same SQL runs on Redshift); `load_file`
    lands the lines through S3 and COPY instead of COPY FROM STDIN.
    """

    flavour = "redshift"

    def __init__(self, connection, store: S3Store, iam_role: str, staging: str | None = None,
                 schema: str = "raw"):
        self.store = store
        self.iam_role = iam_role
        self.staging = S3Location.parse(staging) if staging else None
        quoted = quote(schema)  # `raw`, the default, is a reserved word in Redshift
        self.statements = LandingStatements(quoted)
        self._downloads = tempfile.TemporaryDirectory(prefix="segments-s3-")
        super().__init__(schema=quoted, connection=connection)

    @classmethod
    def from_environment(cls, target: str, schema: str) -> RedshiftWarehouse:
        """Settings from the environment (checked before connecting), the connection from the dbt profile."""
        from .connections import connect

        iam_role, staging = landing_settings()
        return cls(connect(target), S3Store(), iam_role, staging, schema)

    def close(self) -> None:
        super().close()
        self._downloads.cleanup()

    def discover(self, location) -> Discovery:
        """An S3 prefix or object; a local file, folder or glob is landed the same way."""
        if is_s3_url(location):
            if self.staging is None:  # beside the files, in a folder discovery never reads
                source = S3Location.parse(str(location))
                self.staging = S3Location(source.bucket, source.key[:source.key.rfind("/") + 1]).child(STAGING_FOLDER)
            return discover_s3_event_files(self.store, str(location), Path(self._downloads.name))
        if self.staging is None:
            raise SystemExit(f"Set {STAGING_VARIABLE} (s3://bucket/prefix/): where the numbered copies of local "
                             "files go for COPY (by default they go beside the files of an s3:// location).")
        return discover_event_files(location)

    def staging_location(self, load_id: int, file: EventFile) -> S3Location:
        prefix = self.staging if self.staging.is_prefix else self.staging.child("/")
        return prefix.child(f"load-{load_id}-{PurePosixPath(file.name).name}.numbered.gz")

    def load_file(self, file: EventFile, sha: str, size: int) -> int:
        load_id = self.next_load_id()
        with checked_lines(file, load_id) as (reader, has_header, line_count):
            longest = reader.execute("select coalesce(max(strlen(line)), 0) from lines").fetchall()[0][0]
            if longest > REDSHIFT_MAX_VARCHAR:
                raise EventFileError(file.name, f"a line is {longest:,} bytes long, over Redshift's limit of "
                                                f"{REDSHIFT_MAX_VARCHAR:,} bytes: not a REES46 line")
            with tempfile.TemporaryDirectory(prefix="segments-numbered-") as folder:
                numbered = Path(folder) / "numbered.gz"
                write_numbered_lines(reader, numbered)
                staged = self.staging_location(load_id, file)
                self.store.upload(numbered, staged)
                try:
                    self._land(file, load_id, sha, size, has_header, line_count, staged)
                finally:
                    self.store.delete(staged)
        return line_count

    def _land(self, file: EventFile, load_id: int, sha: str, size: int, has_header: bool, line_count: int,
              staged: S3Location) -> None:
        """One transaction: stage, COPY, check, lines and file row; a failure anywhere leaves nothing."""
        try:
            with self.con.cursor() as cur:
                cur.execute(self.statements.create_stage())
                self.copy_into_stage(cur, staged)
                cur.execute(self.statements.staged_lines())
                count, distinct, first, last = cur.fetchall()[0]
                first_expected = 2 if has_header else 1  # the header line is not stored
                if not (count == distinct == line_count and (first, last) == (first_expected,
                                                                              first_expected + line_count - 1)):
                    raise RuntimeError(f"{file.name}: COPY staged {count:,} lines (numbers {first}..{last}, "
                                       f"{distinct:,} distinct), expected {line_count:,}: nothing landed")
                cur.execute(self.statements.insert_lines(load_id))
                cur.execute(self._file_row_sql().replace("?", "%s"),
                            [load_id, file.name, sha, size, has_header, line_count, _now()])
                cur.execute(self.statements.drop_stage())
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise

    def copy_into_stage(self, cur, staged: S3Location) -> None:
        """Redshift reads the numbered object from S3 (the tests run the rest on PostgreSQL without it)."""
        cur.execute(self.statements.copy_from_s3(staged, self.iam_role))
