"""The production path on a real PostgreSQL 15 server (Redshift's ancestor, which runs here).

The tests start their own server (pg_support), land the real October head and the generated demo
files with `segments load`, fit with `segments fit` (no dbt Python models on PostgreSQL), run
`dbt build --target postgres`, and check that every table equals the DuckDB warehouse built from
the same files by the other tests: the same events, features and, for every shopper, segment.
"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

import pg_support
from conftest import NOVEMBER_HEAD, OCTOBER_HEAD, Warehouse
from shopper_segments.ingest import connections
from shopper_segments.ingest.files import LANDED_COLUMNS, LANDED_LINE

FITTED_CONSUMERS = "source:fitted+"
# Columns whose value is the time of the run, not a result.
RUN_TIME_COLUMNS = {"loaded_at", "computed_at", "scored_at", "trained_at"}
# Sums of prices differ in their last bits between warehouses (summation order), so near-ties among
# shoppers can rank the other way round; persona scores average percentile ranks and move by ~1e-5.
RANK_BASED = {"persona_score"}
KEYS = {
    "stg_events": ["load_id", "line_number"],
    "stg_events_rejected": ["load_id", "line_number"],
    "stg_event_loads": ["load_id"],
    "int_sessions": ["user_id", "user_session"],
    "user_features": ["user_id"],
    "user_segments": ["user_id"],
    "segment_profiles": ["segment_id"],
    "segment_labels": ["model_version", "segment_id"],
    "segment_model_metrics": ["model_version", "metric_name", "segment_id", "component"],
}
# The dbt Python models' analyses, which `segments fit` writes on PostgreSQL (and the view on one of them).
ANALYSIS_KEYS = {
    "segment_k_selection": ["model_version", "k"],
    "segment_threshold_curve": ["model_version", "min_events"],
    "segment_feature_analysis": ["model_version", "feature_name"],
    "segment_method_comparison": ["model_version", "comparison", "variant", "population", "metric_name"],
    "segment_classifier_cv": ["model_version", "classifier", "fold"],
    "segment_rules": ["model_version", "segment_id", "rule_number"],
    "segment_classifier_summary": ["model_version", "classifier"],
}


class PostgresWarehouse:
    """One database of the test server, driven through the project's own CLI."""

    def __init__(self, server: pg_support.PostgresServer, database: str, workdir, **env: str):
        self.server = server
        self.database = database
        self.cli = Warehouse(workdir)  # for its `segments` runner (dbt target folder, logs)
        self.pg_env = {"SEGMENTS_TARGET": "postgres", **server.create_database(database), **env}

    def segments(self, *args: str, check: bool = True):
        return self.cli.segments(*args, check=check, **self.pg_env)

    def df(self, sql: str) -> pd.DataFrame:
        con = self.server.connect(self.database)
        try:
            return connections.read_frame(con, sql)
        finally:
            con.close()

    def scalar(self, sql: str):
        return self.server.query(self.database, sql)[0][0]


@pytest.fixture(scope="session")
def postgres(pytestconfig) -> pg_support.PostgresServer:
    return pg_support.shared_server(pytestconfig)


@pytest.fixture(scope="session")
def pg_real(postgres, tmp_path_factory) -> PostgresWarehouse:
    """The main job on the real October head, on PostgreSQL: `segments run` (load, build, fit, build).

    With a BI role to grant the marts to, as production has.
    """
    con = postgres.connect()
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("select 1 from pg_roles where rolname = 'bi_reader'")
        if not cur.fetchall():
            cur.execute("create role bi_reader nologin")
    con.close()
    warehouse = PostgresWarehouse(
        postgres, "real", tmp_path_factory.mktemp("pg_real"), SEGMENTS_BI_GRANTEES="bi_reader"
    )
    result = warehouse.segments("run", "--events", str(OCTOBER_HEAD))
    assert "segment_model:" in result.stdout and "rows written" in result.stdout
    return warehouse


@pytest.fixture(scope="session")
def pg_demo(postgres, tmp_path_factory, demo_events) -> PostgresWarehouse:
    """The demo files on PostgreSQL, step by step and in two deliveries (incremental staging/features).

    DuckDB's demo warehouse got the same files in one run; the results must not depend on that.
    """
    warehouse = PostgresWarehouse(postgres, "demo", tmp_path_factory.mktemp("pg_demo"))
    warehouse.segments("load", "--events", str(NOVEMBER_HEAD))
    warehouse.segments("dbt", "--", "build", "--exclude", FITTED_CONSUMERS)
    warehouse.segments("load", "--events", str(demo_events.files[0].parent))
    warehouse.segments("dbt", "--", "build", "--exclude", FITTED_CONSUMERS)
    fit = warehouse.segments("fit")
    assert "segment_model:" in fit.stdout and "rows written" in fit.stdout
    warehouse.segments("dbt", "--", "build")  # everything, every test, incremental models included
    return warehouse


def _comparable(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in frame.columns if c in RUN_TIME_COLUMNS])
    return frame.sort_values(key).reset_index(drop=True)


def assert_same_table(duck: pd.DataFrame, pg: pd.DataFrame, table: str, float_tolerance: float = 1e-9) -> None:
    """Same columns, rows and values; floats equal up to summation order (1e-9 relative by default)."""
    key = {**KEYS, **ANALYSIS_KEYS}[table]
    duck, pg = _comparable(duck, key), _comparable(pg, key)
    assert list(pg.columns) == list(duck.columns), table
    assert len(pg) == len(duck) > 0, table
    for column in duck.columns:
        left, right = duck[column], pg[column]
        where = f"{table}.{column}"
        if pd.api.types.is_float_dtype(left) or pd.api.types.is_float_dtype(right):
            tolerance = 1e-4 if column in RANK_BASED else float_tolerance
            np.testing.assert_allclose(right.astype(float), left.astype(float), rtol=tolerance, atol=tolerance,
                                       err_msg=where)
        elif pd.api.types.is_integer_dtype(left):
            assert pd.api.types.is_integer_dtype(right), where  # widths may differ (int4 / int8)
            assert right.astype("Int64").equals(left.astype("Int64")), where
        elif pd.api.types.is_datetime64_any_dtype(left):
            assert (pd.to_datetime(right) == left).all(), where
        else:
            assert with_none(right).tolist() == with_none(left).tolist(), where


def with_none(values):
    """A Series or DataFrame as Python objects with every missing value as None (NaN, NA and NaT alike)."""
    return values.astype(object).where(values.notna(), None)


@pytest.mark.parametrize("pair", [("real_warehouse", "pg_real"), ("demo_warehouse", "pg_demo")])
@pytest.mark.parametrize("table", list(KEYS))
def test_postgres_results_equal_duckdb(request, pair, table):
    duck, pg = (request.getfixturevalue(name) for name in pair)
    assert_same_table(duck.df(f"select * from {table}"), pg.df(f"select * from analytics.{table}"), table)


@pytest.mark.parametrize("pair", [("real_warehouse", "pg_real"), ("demo_warehouse", "pg_demo")])
def test_every_shopper_gets_the_same_segment(request, pair):
    duck, pg = (request.getfixturevalue(name) for name in pair)
    query = "select user_id, segment_status, segment_id, segment_name from {} order by user_id"
    expected = duck.df(query.format("user_segments"))
    actual = pg.df(query.format("analytics.user_segments"))
    assert (expected.segment_status == "scored").sum() > 100
    assert actual.user_id.tolist() == expected.user_id.tolist()
    assert actual.segment_status.tolist() == expected.segment_status.tolist()
    assert actual.segment_id.astype("Int64").tolist() == expected.segment_id.astype("Int64").tolist()
    assert actual.segment_name.tolist() == expected.segment_name.tolist()


@pytest.mark.parametrize("pair", [("real_warehouse", "pg_real"), ("demo_warehouse", "pg_demo")])
def test_segments_fit_writes_the_model_the_python_model_writes(request, pair):
    """Same function, same sample, same settings: the same parameters, names and metrics."""
    duck, pg = (request.getfixturevalue(name) for name in pair)
    key = ["model_version", "param_group", "param_name", "feature_name", "component", "segment_id"]

    def tidy(frame):
        frame = frame.drop(columns=["trained_at"])
        frame = frame.assign(**{k: frame[k].astype(str) for k in key})
        return frame.sort_values(key).reset_index(drop=True)

    expected = tidy(duck.df("select * from segment_model"))
    actual = tidy(pg.df("select * from analytics.segment_model"))
    assert actual[key].equals(expected[key])
    # The fingerprint hashes the training values, which differ in the last bits (summation order).
    text = expected.param_name != "fingerprint"
    assert actual.text_value[text].fillna("").tolist() == expected.text_value[text].fillna("").tolist()
    ranked = expected.param_name.isin(RANK_BASED)
    np.testing.assert_allclose(actual.value[~ranked].astype(float), expected.value[~ranked].astype(float),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(actual.value[ranked].astype(float), expected.value[ranked].astype(float), atol=1e-4)


@pytest.mark.parametrize("pair", [("real_warehouse", "pg_real"), ("demo_warehouse", "pg_demo")])
@pytest.mark.parametrize("table", list(ANALYSIS_KEYS))
def test_segments_fit_writes_the_analyses_the_python_models_write(request, pair, table):
    """Same functions, seeds and samples as the dbt Python models: the same rows, numbers within float
    tolerance (the features differ from DuckDB's in their last bits; 1e-6 as for segment_model).
    Version 1, the version both warehouses fitted from the same files (pg_real retrains later)."""
    duck, pg = (request.getfixturevalue(name) for name in pair)
    query = "select * from {} where model_version = 1"
    assert_same_table(duck.df(query.format(table)), pg.df(query.format(f"analytics.{table}")), table,
                      float_tolerance=1e-6)


def test_the_report_on_postgres_is_complete(pg_demo, tmp_path):
    """Every part of the report, the method's analyses included, is built from the PostgreSQL warehouse."""
    output = tmp_path / "report.html"
    result = pg_demo.segments("report", "--output", str(output))
    page = output.read_text()
    assert "not available" not in (result.stdout + page).lower()
    for part in ("Features used", "Minimum-events threshold", "Choosing the number of segments (k)",
                 "Cross-validation", "Method comparison", "One card per segment"):
        assert f">{part}</h" in page, part


def test_the_bi_role_can_read_the_marts_only(pg_real):
    readable = dict(pg_real.server.query(pg_real.database, """
        select table_name, has_table_privilege('bi_reader', table_schema || '.' || table_name, 'select')
        from information_schema.tables where table_schema in ('analytics', 'analytics_private')
    """))
    granted = {name for name, allowed in readable.items() if allowed}
    assert {"user_segments", "segment_profiles", "segment_labels", "segment_model_metrics"} <= granted
    not_marts = {"base_event_lines", "base_pending_event_lines", "stg_events", "stg_events_rejected",
                 "stg_event_loads", "int_sessions", "int_user_features", "user_features", "segment_model", "segment_features", "marketing_calendar"}
    assert not_marts <= set(readable) and granted.isdisjoint(not_marts)


def test_postgres_lands_the_same_lines_as_duckdb(real_warehouse, pg_real):
    # The same rows, split the same way (the line's text, or its nine fields).
    landed = f"select {', '.join(LANDED_COLUMNS)} from raw.event_lines order by line_number"
    expected, actual = real_warehouse.df(landed), pg_real.df(landed)
    assert with_none(actual).values.tolist() == with_none(expected).values.tolist()
    assert actual.line.isna().mean() > 0.99  # nearly every line is landed split
    files = "select load_id, file_name, content_sha256, file_bytes, has_header, line_count, status from raw.event_files"
    assert pg_real.df(files).to_dict("records") == real_warehouse.df(files).to_dict("records")


def test_postgres_loader_rules(postgres, tmp_path):
    """Idempotent by name + content; same content under another name; changed or broken files are quarantined."""
    warehouse = PostgresWarehouse(postgres, "loader_rules", tmp_path / "cli")
    lake = tmp_path / "lake"
    lake.mkdir()
    shutil.copy(NOVEMBER_HEAD, lake / "2019-11-01.csv")
    text = NOVEMBER_HEAD.read_text()
    (lake / "2019-11-02.csv.gz").write_bytes(gzip.compress(text.replace("\n", "\r\n").encode()))
    first = warehouse.segments("load", "--events", str(lake))
    assert "loaded 2 file(s)" in first.stdout
    lines = text.split("\n")
    stored = warehouse.df(f"select load_id, {LANDED_LINE} as line from raw.event_lines order by load_id, line_number")
    assert stored[stored.load_id == 1].line.tolist() == lines == stored[stored.load_id == 2].line.tolist()
    # The landed lines are analysed at once (the planner must not take them for an empty table).
    analysed = warehouse.scalar("select reltuples from pg_class where oid = 'raw.event_lines'::regclass")
    assert analysed == len(stored) and warehouse.scalar(
        "select last_analyze is not null from pg_stat_user_tables where schemaname = 'raw' and relname = 'event_lines'")

    again = warehouse.segments("load", "--events", str(lake))
    assert "2 already loaded" in again.stdout
    shutil.copy(NOVEMBER_HEAD, tmp_path / "renamed.csv")
    duplicate = warehouse.segments("load", "--events", str(tmp_path / "renamed.csv"))
    assert "1 duplicate content" in duplicate.stdout
    before = warehouse.scalar("select count(*) from raw.event_lines")

    (lake / "2019-11-01.csv").write_text(text.replace("view", "cart", 1))
    changed = warehouse.segments("load", "--events", str(lake), check=False)
    assert changed.returncode == 2
    assert "2019-11-01.csv: already loaded (load 1) with different content" in changed.stderr
    (lake / "2019-11-01.csv").write_text(text)  # the original content is back: nothing more to do

    (lake / "2019-11-03.csv.gz").write_bytes(gzip.compress(text.encode() * 50)[:-200])
    broken = warehouse.segments("load", "--events", str(lake), check=False)
    assert broken.returncode == 2 and "2019-11-03.csv.gz: truncated gzip file" in broken.stderr
    assert warehouse.scalar("select count(*) from raw.event_lines") == before
    assert warehouse.df("select file_name, status from raw.event_files order by load_id").values.tolist() == [
        ["2019-11-01.csv", "loaded"], ["2019-11-02.csv.gz", "loaded"], ["renamed.csv", "duplicate_content"],
        ["2019-11-01.csv", "quarantined"], ["2019-11-03.csv.gz", "quarantined"],
    ]


def test_running_again_changes_nothing_and_retraining_adds_a_version(pg_real):
    """Last test of the module (it adds a model version): the daily run, then the monthly retraining."""
    scored_before = pg_real.df("select user_id, segment_id, scored_at from analytics.user_segments order by user_id")
    again = pg_real.segments("run", "--events", str(OCTOBER_HEAD))
    assert "1 already loaded" in again.stdout and "segment_model: unchanged" in again.stdout
    scored_after = pg_real.df("select user_id, segment_id, scored_at from analytics.user_segments order by user_id")
    assert scored_after.equals(scored_before)

    same_inputs = pg_real.segments("fit", "--retrain")
    assert "segment_model: unchanged" in same_inputs.stdout  # retraining on unchanged inputs adds nothing

    retrain = pg_real.segments("run", "--retrain", "--events", str(OCTOBER_HEAD), "--", "--vars", "{n_segments: 5}")
    assert "rows written" in retrain.stdout
    versions = pg_real.df(
        "select model_version, value from analytics.segment_model "
        "where param_group = 'config' and param_name = 'n_segments' order by model_version"
    )
    assert versions.values.tolist() == [[1, 0.0], [2, 5.0]]  # 0: `auto`, k chosen by the scan (the default)
    current = pg_real.df(
        "select distinct model_version, segment_id from analytics.user_segments where segment_id is not null"
    )
    # Version 2 has 5 segments; `segments fit` now matches them to version 1's (stable identities), so a
    # segment that is new in version 2 gets a fresh id above version 1's instead of reusing a retired one.
    first_ids = set(pg_real.df("select distinct segment_id from analytics.segment_model "
                               "where model_version = 1 and segment_id is not null").segment_id)
    assert set(current.model_version) == {2} and len(set(current.segment_id)) == 5
    assert all(segment_id in first_ids or segment_id > max(first_ids) for segment_id in set(current.segment_id))
    assert pg_real.scalar("select count(*) from analytics.segment_profiles") == 5


def test_erasure_reaches_every_line_kind_on_postgres(postgres, tmp_path):
    """The erasure rules (canonical id, malformed lines, landed lines) run unchanged on PostgreSQL."""
    warehouse = PostgresWarehouse(postgres, "erasure", tmp_path / "wh")
    lake = tmp_path / "lake"
    lake.mkdir()
    head = OCTOBER_HEAD.read_text().splitlines()[:400]
    erased = int(head[1].split(",")[7])
    (lake / "head.csv").write_text("\n".join(head) + "\n")
    (lake / "malformed.csv").write_text(
        f"2019-10-01 00:00:00 UTC,view,1,2,,,1.00, {erased},s-malformed\n"
        f"2019-10-01 00:00:01 UTC,view,1,2,,,1.00,{erased}\n"
    )
    staging = ("dbt", "--", "build", "--select", "+stg_event_loads")  # staging only: no fit needed
    warehouse.segments("load", "--events", str(lake))
    warehouse.segments(*staging)
    mentions = f"""select count(*) from raw.event_lines
                   where {LANDED_LINE} ~ '(^|[^0-9])0*{erased}([^0-9]|$)'"""
    assert warehouse.scalar(mentions) >= 3
    assert warehouse.scalar("select count(*) from analytics.stg_events_rejected "
                            f"where raw_line like '%{erased}%'") == 2
    warehouse.segments("erase", "--request-id", "DSR-PG-1", "--user-id", str(erased))
    (lake / "late.csv").write_text(f"2019-10-01 00:05:00 UTC,cart,7,8,,,2.50,0{erased},s-late\n")
    warehouse.segments("load", "--events", str(lake))
    warehouse.segments(*staging)
    assert warehouse.scalar(mentions) == 0
    assert warehouse.scalar(f"select count(*) from analytics.stg_events where user_id = {erased}") == 0
    assert warehouse.scalar("select count(*) from analytics.stg_events_rejected "
                            f"where raw_line like '%{erased}%'") == 0
    assert warehouse.scalar("select rows_erased from analytics.stg_event_loads where file_name = 'late.csv'") == 1
