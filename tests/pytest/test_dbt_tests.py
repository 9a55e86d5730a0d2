"""The project's dbt tests themselves: the unit tests (left out of the job's builds) pass, and the
one-query column rules (`columns_are_valid`, macros/tests/generic_tests.sql) catch what they state.
(Which rows a run's tests read: test_test_scope.py.)"""

from __future__ import annotations

import json

import duckdb

from conftest import copy_warehouse, last_results


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
        con.execute(f"update int_user_features set sessions = 0, night_share = 1.5 where user_id = {first}")
        con.execute(f"update int_user_features set sessions = 0, events = null where user_id = {second}")
    failed = warehouse.segments("dbt", "--", "test", *selection, "--store-failures", check=False)
    assert failed.returncode == 1, failed.stdout
    assert [(node["status"], node["failures"]) for node in last_results(warehouse, "test")] == [("fail", 3)]
    with warehouse.connect() as con:  # --store-failures keeps the failing rows under the test's name
        broken = dict(con.sql("select broken_rule, failing_rows from main_dbt_test__audit.user_features_columns_are_valid")
                      .fetchall())
    assert broken == {"events is null": 1, "sessions < 1": 2, "night_share > 1": 1}
