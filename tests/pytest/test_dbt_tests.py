"""The project's dbt tests themselves: the unit tests (left out of the job's builds) pass, the one-query
column rules (`columns_are_valid`, macros/tests/generic_tests.sql) catch what they state, and a daily run
tests the rows it should (macros/tests/test_scope.sql)."""

from __future__ import annotations

import json

import duckdb

from conftest import OCTOBER_HEAD, copy_warehouse


def last_results(warehouse, kind: str) -> list[dict]:
    """The nodes of one kind (`test`, `unit_test`, `model`) in the warehouse's last dbt command's run_results."""
    results = json.loads((warehouse.target_dir / "run_results.json").read_text())["results"]
    return [node for node in results if node["unique_id"].startswith(f"{kind}.")]


def test_the_dbt_unit_tests_pass_and_the_job_leaves_them_out(real_warehouse, tmp_path):
    assert last_results(real_warehouse, "model")  # the job's build ran...
    assert last_results(real_warehouse, "unit_test") == []  # ...without the unit tests

    warehouse = copy_warehouse(real_warehouse, tmp_path / "wh")
    warehouse.segments("dbt", "--", "test", "--select", "test_type:unit")
    unit_tests = json.loads((warehouse.target_dir / "manifest.json").read_text())["unit_tests"]
    assert len(unit_tests) >= 5
    ran = sorted((node["unique_id"], node["status"]) for node in last_results(warehouse, "unit_test"))
    assert ran == [(name, "pass") for name in sorted(unit_tests)]


def test_columns_are_valid_reports_each_broken_rule(real_warehouse, tmp_path):
    warehouse = copy_warehouse(real_warehouse, tmp_path / "wh")
    selection = ["--select", "user_features_columns_are_valid"]
    warehouse.segments("dbt", "--", "test", *selection)
    assert [(node["status"], node["failures"]) for node in last_results(warehouse, "test")] == [("pass", 0)]
    with duckdb.connect(str(warehouse.path)) as con:
        first, second = [row[0] for row in con.sql("select user_id from user_features order by user_id limit 2").fetchall()]
        con.execute(f"update user_features set sessions = 0, night_share = 1.5 where user_id = {first}")
        con.execute(f"update user_features set sessions = 0, events = null where user_id = {second}")
    failed = warehouse.segments("dbt", "--", "test", *selection, "--store-failures", check=False)
    assert failed.returncode == 1, failed.stdout
    assert [(node["status"], node["failures"]) for node in last_results(warehouse, "test")] == [("fail", 3)]
    with warehouse.connect() as con:  # --store-failures keeps the failing rows under the test's name
        broken = dict(con.sql("select broken_rule, failing_rows from main_dbt_test__audit.user_features_columns_are_valid")
                      .fetchall())
    assert broken == {"events is null": 1, "sessions < 1": 2, "night_share > 1": 1}


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
