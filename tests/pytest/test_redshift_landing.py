"""`segments load` on Redshift (COPY from S3), tested around the one statement that cannot run here.

Redshift cannot be reached from the build machines, so (docs/deployment.md):
- the whole landing path (S3 listing, download, checks, numbered upload, the transaction per file)
  runs against the PostgreSQL server of the tests, S3 being moto's in-memory S3 through the real
  boto3 calls, with the S3 `COPY` replaced by a local `COPY FROM STDIN` of the same numbered object;
- every statement sent to the warehouse on that run, and the S3 `COPY` itself, must parse as
  Redshift SQL (sqlfluff's redshift dialect), and the results must equal the DuckDB loader's on the
  same files, state after state (new, again, renamed, rewritten, broken).
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys

import pytest
import sqlfluff

import pg_support
from conftest import NOVEMBER_HEAD, OCTOBER_HEAD, PROJECT, Warehouse
from shopper_segments import settings
from shopper_segments.ingest.files import LANDED_COLUMNS, LANDED_LINE
from shopper_segments.ingest.loader import load_event_files
from shopper_segments.ingest.redshift_landing import (
    STAGING_FOLDER,
    LandingStatements,
    RedshiftWarehouse,
    S3Location,
    S3Store,
    landing_settings,
)
from shopper_segments.ingest.warehouses import DuckDBWarehouse

import moto  # noqa: E402 - pinned in requirements/dev.txt

BUCKET = "lake"
PREFIX = f"s3://{BUCKET}/events/"
ROLE = "arn:aws:iam::123456789012:role/segments-copy"
# sqlfluff on the statements: parsing as Redshift SQL, plus rules about meaning rather than layout.
MEANING_RULES = ["ambiguous.distinct", "ambiguous.union", "ambiguous.join", "ambiguous.column_references"]


def assert_redshift_sql(statements: list[str]) -> None:
    problems = []
    for sql in statements:
        try:
            sqlfluff.parse(sql, dialect="redshift")
        except sqlfluff.api.APIParsingError as error:
            problems.append(f"{sql}\n  -> {str(error).splitlines()[-1]}")
            continue
        problems += [f"{sql}\n  -> {v['code']} {v['description']}"
                     for v in sqlfluff.lint(sql, dialect="redshift", rules=MEANING_RULES)]
    assert problems == [], "\n".join(problems)


class Recorder:
    """Every statement a psycopg2 connection sends, as the server received it (parameters bound)."""

    def __init__(self, con):
        import psycopg2.extensions

        sent = self.sent = []

        class RecordingCursor(psycopg2.extensions.cursor):
            def execute(self, sql, params=None):
                sent.append(self.mogrify(sql, params).decode())
                return super().execute(sql, params)

        con.cursor_factory = RecordingCursor


class RedshiftOnPostgres(RedshiftWarehouse):
    """RedshiftWarehouse with the S3 COPY replaced by PostgreSQL's COPY FROM STDIN of the same object.

    The numbered object is read back from S3 and split as Redshift's COPY splits it (at the first
    0x1F, nothing unescaped), then sent in PostgreSQL's text format (backslash escapes).
    """

    def copy_into_stage(self, cur, staged: S3Location) -> None:
        self.copies.append(self.statements.copy_from_s3(staged, self.iam_role))
        rows = []
        for raw in gzip.decompress(self.store.read(staged)).decode("utf-8").split("\n")[:-1]:
            number, line = raw.split("\x1f", 1)
            escaped = line.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r")
            rows.append(f"{number}\t{escaped}\n")
        self.copy_rows(cur, rows)

    def copy_rows(self, cur, rows: list[str]) -> None:
        cur.copy_expert(f"copy {self.statements.stage} (line_number, line) from stdin",
                        io.StringIO("".join(rows)))


@pytest.fixture
def s3(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        store = S3Store()
        store.client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield store


@pytest.fixture
def postgres_database(pytestconfig, request):
    server = pg_support.shared_server(pytestconfig)
    name = "landing_" + request.node.name.lower()[:40].replace("[", "_").replace("]", "")
    server.create_database(name)
    return server, name


def open_redshift(postgres_database, store, cls=RedshiftOnPostgres, staging=None):
    server, database = postgres_database
    con = server.connect(database)
    con.autocommit = False
    recorder = Recorder(con)
    warehouse = cls(con, store, ROLE, staging)
    warehouse.copies = []  # the S3 COPY statements the stand-in replaced
    return warehouse, recorder


def put(store: S3Store, name: str, data: bytes) -> None:
    store.client.put_object(Bucket=BUCKET, Key=f"events/{name}", Body=data)


FILE_COLUMNS = "load_id, file_name, content_sha256, file_bytes, has_header, line_count, status, duplicate_of_load_id"


def raw_tables(query) -> tuple[list, list]:
    files = [tuple(row) for row in query(f"select {FILE_COLUMNS}, reason from raw.event_files order by load_id")]
    lines = [tuple(row) for row in query(f"select {', '.join(LANDED_COLUMNS)} from raw.event_lines "
                                         "order by load_id, line_number")]
    return files, lines


def test_s3_landing_follows_the_loaders_rules_and_sends_only_redshift_sql(s3, postgres_database, tmp_path):
    """State after state, the Redshift landing (run on PostgreSQL) stores what the DuckDB loader stores."""
    october = OCTOBER_HEAD.read_text().splitlines()[:300]
    # A header file with lines COPY must keep as they are: backslashes, quotes, tabs, a NULL-looking
    # line, a blank line, a line of nine fields holding them (landed split); a header-less CRLF gzip file;
    # a text file and a sub-folder that are not read.
    tricky = ["\\N", "", 'a "quoted",\\field\twith tab', "\\\\", "a\\b,\tc,,\\N,,,,,", *october[1:5]]
    files = {
        "2019-10-01.csv": "\n".join([*october, *tricky]).encode() + b"\n",
        "2019-11-01.csv.gz": gzip.compress(NOVEMBER_HEAD.read_text().replace("\n", "\r\n").encode()),
        "notes.txt": b"not events",
        "archive/2019-09-30.csv": b"ignored",
    }
    local = tmp_path / "events"
    (local / "archive").mkdir(parents=True)
    duck = DuckDBWarehouse(tmp_path / "reference.duckdb")
    redshift, recorder = open_redshift(postgres_database, s3)
    server, database = postgres_database

    def deliver(name: str, data: bytes) -> None:
        put(s3, name, data)
        (local / name).write_bytes(data)

    def land_both():
        expected = load_event_files(duck, local, log=lambda _: None)
        actual = load_event_files(redshift, PREFIX, log=lambda _: None)
        assert (actual.loaded, actual.skipped, actual.duplicates) == \
            (expected.loaded, expected.skipped, expected.duplicates)
        assert [name for name, _ in actual.quarantined] == [name for name, _ in expected.quarantined]
        assert raw_tables(lambda sql: server.query(database, sql)) == raw_tables(duck._query)
        assert s3.list(S3Location(BUCKET, f"events/{STAGING_FOLDER}"))[0] == []  # numbered copies removed
        return actual

    for name, data in files.items():
        deliver(name, data)
    first = land_both()
    assert [name for name, _ in first.loaded] == ["2019-10-01.csv", "2019-11-01.csv.gz"]
    assert dict(first.not_event_files).keys() == {"notes.txt", "archive/"}
    stored = server.query(database, f"select {LANDED_LINE} from raw.event_lines where load_id = 1 order by line_number")
    assert [line for (line,) in stored][-len(tricky):] == tricky

    assert land_both().skipped == ["2019-10-01.csv", "2019-11-01.csv.gz"]  # idempotent
    deliver("copy-of-october.csv", files["2019-10-01.csv"])  # same content, new name
    assert land_both().duplicates == [("copy-of-october.csv", "2019-10-01.csv")]
    deliver("2019-10-01.csv", files["2019-10-01.csv"].replace(b"view", b"cart", 1))  # rewritten
    deliver("2019-11-02.csv.gz", files["2019-11-01.csv.gz"][:-40])  # truncated gzip
    broken = land_both()
    assert dict(broken.quarantined).keys() == {"2019-10-01.csv", "2019-11-02.csv.gz"}
    assert "truncated gzip" in dict(broken.quarantined)["2019-11-02.csv.gz"]

    # Everything sent to the warehouse, and the S3 COPY it replaces here, is Redshift SQL.
    assert any(sql.startswith("create temporary table") for sql in recorder.sent)
    assert len(redshift.copies) == 2
    assert_redshift_sql(recorder.sent + redshift.copies)
    redshift.close()
    duck.close()


def test_a_copy_that_loses_lines_lands_nothing(s3, postgres_database):
    """The transaction checks that COPY staged every numbered line once; otherwise nothing of the file stays."""

    class LosingCopy(RedshiftOnPostgres):
        def copy_rows(self, cur, rows):
            super().copy_rows(cur, rows[:-3])

    put(s3, "2019-11-01.csv", NOVEMBER_HEAD.read_bytes())
    server, database = postgres_database
    losing, _ = open_redshift(postgres_database, s3, LosingCopy)
    with pytest.raises(RuntimeError, match=r"2019-11-01.csv: COPY staged .* expected .*nothing landed"):
        load_event_files(losing, PREFIX, log=lambda _: None)
    losing.close()
    assert raw_tables(lambda sql: server.query(database, sql)) == ([], [])
    assert s3.list(S3Location(BUCKET, f"events/{STAGING_FOLDER}"))[0] == []
    # The next run lands it whole; with SEGMENTS_S3_STAGING_PREFIX's value, the numbered copy goes there.
    redshift, _ = open_redshift(postgres_database, s3, staging=f"s3://{BUCKET}/numbered/")
    assert load_event_files(redshift, PREFIX, log=lambda _: None).loaded == [
        ("2019-11-01.csv", len(NOVEMBER_HEAD.read_text().split("\n")))]
    assert f"from 's3://{BUCKET}/numbered/load-1-2019-11-01.csv.numbered.gz'" in redshift.copies[0]
    assert s3.list(S3Location(BUCKET, "numbered/"))[0] == []
    redshift.close()
    local, _ = open_redshift(postgres_database, s3)  # a local folder needs the staging prefix
    with pytest.raises(SystemExit, match="Set SEGMENTS_S3_STAGING_PREFIX"):
        load_event_files(local, NOVEMBER_HEAD.parent, log=lambda _: None)
    local.close()


def test_the_s3_copy_statement_is_redshift_sql():
    statements = LandingStatements('"raw"')
    source = S3Location(BUCKET, "events/_segments_staging/load-7-2019-10-01.csv.numbered.gz")
    with_role = statements.copy_from_s3(source, ROLE)
    assert_redshift_sql([with_role, statements.copy_from_s3(source, "default")])
    assert f"from 's3://{BUCKET}/events/_segments_staging/load-7-2019-10-01.csv.numbered.gz'" in with_role
    assert f"iam_role '{ROLE}'" in with_role and "maxerror 0" in with_role and "gzip" in with_role
    # The check fails on what Redshift does not take: the DuckDB/PostgreSQL DDL and an unquoted `raw`.
    for not_redshift in ("alter table raw_schema.event_files add column if not exists reason varchar",
                         "select load_id from raw.event_files"):
        with pytest.raises(AssertionError):
            assert_redshift_sql([not_redshift])


def test_the_landing_settings(monkeypatch):
    """SEGMENTS_S3_PREFIX is Redshift's default location (--events wins); the COPY role and staging prefix."""
    monkeypatch.setenv("SEGMENTS_S3_PREFIX", PREFIX)
    monkeypatch.setenv("SEGMENTS_EVENTS", "data/sample")
    assert settings.events_location(None, "redshift") == PREFIX
    assert settings.events_location("s3://other/x/", "redshift") == "s3://other/x/"
    assert settings.events_location(None, "duckdb") == PROJECT / "data" / "sample"
    monkeypatch.setenv("SEGMENTS_REDSHIFT_COPY_ROLE", ROLE)
    monkeypatch.setenv("SEGMENTS_S3_STAGING_PREFIX", "s3://lake/numbered/")
    assert landing_settings() == (ROLE, "s3://lake/numbered/")
    monkeypatch.delenv("SEGMENTS_S3_STAGING_PREFIX")
    assert landing_settings() == (ROLE, None)


def test_load_on_redshift_says_what_is_missing_before_connecting(tmp_path):
    """The documented settings: the IAM role for COPY; S3 locations only on Redshift; boto3 only there."""
    cli = Warehouse(tmp_path)
    no_role = cli.segments("load", "--events", PREFIX, check=False, SEGMENTS_TARGET="redshift",
                           SEGMENTS_REDSHIFT_COPY_ROLE="")
    assert no_role.returncode != 0 and "needs SEGMENTS_REDSHIFT_COPY_ROLE" in no_role.stdout + no_role.stderr
    on_duckdb = cli.segments("load", "--events", PREFIX, check=False, SEGMENTS_TARGET="duckdb")
    assert on_duckdb.returncode != 0 and "S3 locations are landed on Redshift" in on_duckdb.stdout + on_duckdb.stderr
    imports = subprocess.run([sys.executable, "-c", "import sys, shopper_segments.cli, shopper_segments.ingest.loader; "
                              "print('boto3' in sys.modules)"], cwd=PROJECT, capture_output=True, text=True)
    assert imports.stdout.strip() == "False", imports.stderr
