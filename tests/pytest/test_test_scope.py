"""Which rows a run's data tests read (macros/tests/test_scope.sql; docs/data_quality.md, "What a run
tests"), on a copy of the real sample's warehouse. Not in `make check`: two `segments run`s."""

from __future__ import annotations

import duckdb

from conftest import OCTOBER_HEAD, copy_warehouse, last_results


def test_a_daily_run_tests_the_loads_not_tested_yet_and_other_runs_every_row(real_warehouse, tmp_path):
    """docs/data_quality.md, "What a run tests": a daily run's tests of the staged events read the loads
    not in raw.tested_loads; told to (SEGMENTS_DATA_TESTS=all), and in any other dbt command, every row.
    (A retraining run reads every row: test_model_stability.py.)"""
    warehouse = copy_warehouse(real_warehouse, tmp_path / "wh")
    audited = "select load_id from stg_event_loads order by load_id"
    assert warehouse.df("select load_id from raw.tested_loads order by load_id").equals(warehouse.df(audited))
    # An old staged event breaks a rule after its load passed.
    with duckdb.connect(str(warehouse.path)) as con:
        load_id, line = con.sql("select load_id, line_number from stg_events order by all limit 1").fetchall()[0]
        con.execute(f"update stg_events set price = -1 where load_id = {load_id} and line_number = {line}")
    rule = "stg_events_columns_are_valid"

    warehouse.segments("run", "--events", str(OCTOBER_HEAD))  # daily: every landed load has passed
    [scoped] = [node for node in last_results(warehouse, "test") if rule in node["unique_id"]]
    assert scoped["status"] == "pass" and "load_id in (null)" in scoped["compiled_code"]
    every_row = warehouse.segments("run", "--events", str(OCTOBER_HEAD), check=False, SEGMENTS_DATA_TESTS="all")
    assert every_row.returncode == 1 and rule in every_row.stdout
    direct = warehouse.segments("dbt", "--", "test", "--select", rule, check=False)
    assert direct.returncode == 1

    # A load taken out of raw.tested_loads is read again, and stays out while its tests fail.
    with duckdb.connect(str(warehouse.path)) as con:
        con.execute(f"delete from raw.tested_loads where load_id = {load_id}")
    again = warehouse.segments("dbt", "--", "test", "--select", rule, check=False, SEGMENTS_DATA_TESTS="new")
    assert again.returncode == 1
    [scoped] = [node for node in last_results(warehouse, "test") if rule in node["unique_id"]]
    assert f"load_id in ({load_id})" in scoped["compiled_code"]
    again = warehouse.segments("run", "--events", str(OCTOBER_HEAD), check=False)
    assert again.returncode == 1
    assert warehouse.scalar(f"select count(*) from raw.tested_loads where load_id = {load_id}") == 0
    wrong = warehouse.segments("dbt", "--", "test", "--select", rule, check=False, SEGMENTS_DATA_TESTS="some")
    assert wrong.returncode != 0 and "SEGMENTS_DATA_TESTS must be `new` or `all`" in wrong.stdout
