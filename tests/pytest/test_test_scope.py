"""Which rows a run's data tests read (macros/tests/test_scope.sql; docs/data_quality.md, "What a run
tests"), on a copy of the real sample's warehouse. Not in `make check`: two `segments run`s."""

from __future__ import annotations

import duckdb
import pytest

from conftest import NOVEMBER_HEAD, OCTOBER_HEAD, copy_warehouse, last_results


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
    # The tests of the whole semantic view (tag full_runs_only) are left to the other builds.
    assert not [node for node in last_results(warehouse, "test") if "segment_shopper_days" in node["unique_id"]]
    every_row = warehouse.segments("run", "--events", str(OCTOBER_HEAD), check=False, SEGMENTS_DATA_TESTS="all")
    assert every_row.returncode == 1 and rule in every_row.stdout
    # (selected here, though skipped: the broken stg_events test stops everything downstream)
    view_tests = [node for node in last_results(warehouse, "test") if "segment_shopper_days" in node["unique_id"]]
    assert len(view_tests) == 2, view_tests
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


def test_a_daily_run_probes_the_history_for_duplicates_of_the_new_rows_only(real_warehouse, tmp_path):
    """The nine-field uniqueness of stg_events has no load column: on a daily run it reads the rows that
    share a shopper and a time with a row of an untested load (load_scoped_probe_columns). A new row
    duplicating an old one fails it; duplicates among tested rows pass it (found when they were tested),
    and fail it when every row is read."""
    warehouse = copy_warehouse(real_warehouse, tmp_path / "wh")
    warehouse.segments("load", "--events", str(NOVEMBER_HEAD))  # a new load, not staged nor tested yet
    new_load = warehouse.scalar("select max(load_id) from raw.event_files")
    rule = "unique_combination_stg_events_event_time__event_type"
    copy_of_an_old_row = ("insert into stg_events select * replace ({load} as load_id, -1 as line_number) "
                          "from stg_events where line_number = (select min(line_number) from stg_events)")
    with duckdb.connect(str(warehouse.path)) as con:
        con.execute(copy_of_an_old_row.format(load="load_id"))  # both copies in a tested load

    def daily_test(**env):
        result = warehouse.segments("dbt", "--", "test", "--select", "stg_events", check=False,
                                    SEGMENTS_DATA_TESTS="new", **env)
        [node] = [node for node in last_results(warehouse, "test") if rule in node["unique_id"]]
        return result, node

    result, node = daily_test()
    assert node["status"] == "pass", node
    assert f"new_rows.load_id in ({new_load})" in node["compiled_code"]
    assert "new_rows.user_id = scoped_rows.user_id" in node["compiled_code"]
    assert warehouse.segments("dbt", "--", "test", "--select", "stg_events", check=False).returncode == 1

    with duckdb.connect(str(warehouse.path)) as con:
        con.execute("delete from stg_events where line_number = -1")
        con.execute(copy_of_an_old_row.format(load=new_load))  # a new row duplicating an old one
    result, node = daily_test()
    assert node["status"] == "fail" and result.returncode == 1, node


# The models tested by their rows' newest load (last_load_id): the stored table a test's row is
# broken in, its key, a rule-breaking change, and its two tests (a column rule and the key's uniqueness).
TESTED_BY_LAST_LOAD = {
    "int_sessions": ("int_sessions", ["user_id", "user_session"], "duration_seconds = -1",
                     ("int_sessions_columns_are_valid", "unique_combination_int_sessions_user_id__user_session")),
    "user_features": ("int_user_features", ["user_id"], "sessions = 0",
                      ("user_features_columns_are_valid", "unique_combination_user_features_user_id")),
}


@pytest.mark.parametrize("model", TESTED_BY_LAST_LOAD)
def test_a_daily_run_tests_the_sessions_and_shoppers_of_the_untested_loads(real_warehouse, tmp_path, model):
    """int_sessions and user_features are tested by load too: on a daily run their tests read the rows
    whose newest event comes from an untested load (last_load_id), and their uniqueness the rows of the
    shoppers with such a row. A broken and a duplicated old row pass a daily test, fail a full one, and
    fail a daily one once their load is untested again."""
    stored, key, breaking, rules = TESTED_BY_LAST_LOAD[model]
    warehouse = copy_warehouse(real_warehouse, tmp_path / "wh")
    with duckdb.connect(str(warehouse.path)) as con:
        *key_values, load_id = con.sql(f"select {', '.join(key)}, last_load_id from {stored} order by all limit 1"
                                       ).fetchall()[0]
        old_row = " and ".join(f"{column} = ?" for column in key)
        con.execute(f"update {stored} set {breaking} where {old_row}", key_values)
        con.execute(f"insert into {stored} select * from {stored} where {old_row}", key_values)

    def daily_or_full_tests(**env):
        result = warehouse.segments("dbt", "--", "test", "--select", model, check=False, **env)
        nodes = {rule: node for node in last_results(warehouse, "test") for rule in rules if rule in node["unique_id"]}
        assert nodes.keys() == set(rules), nodes.keys()
        return result, nodes

    result, nodes = daily_or_full_tests(SEGMENTS_DATA_TESTS="new")
    assert result.returncode == 0 and {node["status"] for node in nodes.values()} == {"pass"}
    assert "last_load_id in (null)" in nodes[rules[0]]["compiled_code"]
    assert "new_rows.user_id = scoped_rows.user_id" in nodes[rules[1]]["compiled_code"]
    result, nodes = daily_or_full_tests(SEGMENTS_DATA_TESTS="all")
    assert result.returncode == 1 and {node["status"] for node in nodes.values()} == {"fail"}

    with duckdb.connect(str(warehouse.path)) as con:
        con.execute(f"delete from raw.tested_loads where load_id = {load_id}")
    result, nodes = daily_or_full_tests(SEGMENTS_DATA_TESTS="new")
    assert result.returncode == 1 and {node["status"] for node in nodes.values()} == {"fail"}
    assert f"last_load_id in ({load_id})" in nodes[rules[0]]["compiled_code"]