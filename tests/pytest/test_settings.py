"""The documented settings reach the fit and the scoring; sparse data leaves a usable warehouse.

One small real warehouse, two real runs (`segments run`, real dbt build and sklearn fits):
1. the first 300 rows of the real October head: only one shopper has 8 events, too few to fit.
   The build still succeeds, says why in one line, every shopper is `not_enough_history`, a dbt
   test warns and the report explains the empty model parts;
2. the next 1,700 rows land with every fit var changed at once: the model is fitted with them,
   records them, and the scoring and the analyses use them.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import yaml

from conftest import OCTOBER_HEAD, PROJECT, Warehouse
from shopper_segments.model import due, fit, params as model_params

# Every fit var set to a value that is not its default (dbt_project.yml), all in one run.
CHANGED_VARS = {
    "min_events": 3,
    "n_segments": 3,
    "k_min": 3,
    "k_max": 4,
    "fit_sample_size": 150,
    "pca_variance": 0.7,
    "random_seed": 7,
    "max_rejection_rate": 0.0001,
}
# The parts of the report that show the model.
MODEL_PARTS = ("Choosing the number of segments (k)", "Model quality", "Cross-validation", "The segments")


def test_changed_vars_differ_from_the_defaults():
    defaults = yaml.safe_load((PROJECT / "dbt_project.yml").read_text())["vars"]
    assert all(str(defaults[name]) != str(value) for name, value in CHANGED_VARS.items())


def test_fit_outside_dbt_reads_the_same_settings_as_the_dbt_model():
    """`segments fit` (PostgreSQL, Redshift) renders segment_model's meta with the run's vars."""
    config = fit.python_model_config("segment_model", "postgres", CHANGED_VARS)
    settings = model_params.FitSettings.from_model_meta(config["meta"])
    assert (settings.min_events, settings.n_segments, settings.k_min, settings.k_max) == (3, 3, 3, 4)
    assert (settings.sample_size, settings.pca_variance, settings.random_state) == (150, 0.7, 7)
    assert not due.retrain_requested(config["meta"])
    assert due.retrain_requested(fit.python_model_config("segment_model", "postgres", {"retrain": True})["meta"])
    auto = model_params.FitSettings.from_model_meta(fit.python_model_config("segment_model", "postgres", {})["meta"])
    assert auto.n_segments == 0 and auto == model_params.FitSettings()  # the YAML defaults are the class defaults


def test_settings_without_their_meta_are_an_error_not_the_defaults():
    with pytest.raises(ValueError, match="meta.fit_settings"):
        model_params.FitSettings.from_model_meta({"owner": "someone"})
    with pytest.raises(ValueError, match="unknown fit settings"):
        model_params.FitSettings.from_model_meta({"fit_settings": {"min_event": 3}})


def test_a_feature_nobody_has_is_imputed_without_a_warning():
    """A feature undefined for every training shopper (no priced purchase in a small sample)."""
    specs = [model_params.FeatureSpec("avg_purchased_price", True, "median"), model_params.FeatureSpec("events", True, "0")]
    values = np.array([[np.nan, 3.0], [np.nan, 9.0], [np.nan, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = model_params.HeavyTailPreprocessor(specs).fit(values)
    assert list(fitted.impute_values_) == [0.0, 0.0]
    assert np.isfinite(fitted.transform(values)).all()


@pytest.fixture(scope="module")
def sparse_then_changed(tmp_path_factory):
    """The warehouse after each of the two runs (output, report, counts), in one module-wide build."""
    workdir = tmp_path_factory.mktemp("settings")
    lines = OCTOBER_HEAD.read_text().splitlines(keepends=True)
    lake = workdir / "lake"
    lake.mkdir()
    (lake / "2019-Oct-part1.csv").write_text("".join(lines[:301]))
    warehouse = Warehouse(workdir)
    first = warehouse.segments("run", "--events", str(lake), check=False)
    report = workdir / "sparse_report.html"
    first_report = warehouse.segments("report", "--output", str(report), check=False)
    sparse = {
        "run": first,
        "report": first_report,
        "html": report.read_text() if report.exists() else "",
        "users": warehouse.df("select segment_status, count(*) as n from user_segments group by 1"),
        "shoppers": warehouse.scalar("select count(*) from user_features"),
        "analyses": {t: warehouse.scalar(f"select count(*) from {t}") for t in (
            "segment_model", "segment_k_selection", "segment_threshold_curve", "segment_classifier_cv",
            "segment_rules", "segment_feature_analysis", "segment_method_comparison", "segment_profiles")},
    }
    # One line that breaks a rule (a negative price): its file's rejection rate is above 0.0001.
    rest = lines[301:2001]
    rest[5] = re.sub(r",(\d+\.\d+),(\d+),", r",-\1,\2,", rest[5], count=1)
    (lake / "2019-Oct-part2.csv").write_text(lines[0] + "".join(rest))
    second = warehouse.segments("run", "--events", str(lake), "--", "--vars", yaml.safe_dump(CHANGED_VARS, default_flow_style=True).strip())
    return warehouse, sparse, second


def test_sparse_data_builds_and_says_why_nobody_is_segmented(sparse_then_changed):
    _, sparse, _ = sparse_then_changed
    run = sparse["run"]
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = [line for line in output.splitlines() if "segment_model: " in line]
    assert lines == ["segment_model: 1 shopper has at least 8 events (min_events); fitting 2 segments needs at "
                     "least 4: no model fitted, every shopper stays not_enough_history; lower min_events or land "
                     "more events."]
    assert re.search(r"WARN 1 assert_segment_model_is_fitted", output), output
    assert "ERROR=0" in output and "SKIP=0" in output
    statuses = dict(zip(sparse["users"].segment_status, sparse["users"].n))
    assert statuses == {"not_enough_history": sparse["shoppers"]} and sparse["shoppers"] > 100
    assert set(sparse["analyses"].values()) == {0}


def test_sparse_report_says_why_the_model_parts_are_empty(sparse_then_changed):
    _, sparse, _ = sparse_then_changed
    assert sparse["report"].returncode == 0, sparse["report"].stdout + sparse["report"].stderr
    page = sparse["html"]
    reason = ("No segment model is fitted: 1 shopper has at least 8 events (min_events); fitting 2 segments "
              "needs at least 4")
    for part in MODEL_PARTS:
        section = page.split(f">{part}</h", 1)[1].split("<h", 1)[0]
        assert reason in section, part


def test_every_fit_var_reaches_the_stored_model(sparse_then_changed):
    warehouse, _, second = sparse_then_changed
    config = dict(warehouse.df("select param_name, value from segment_model where param_group = 'config'").values)
    assert warehouse.scalar("select count(distinct model_version) from segment_model") == 1
    assert {name: config[name] for name in ("min_events", "n_segments", "k_min", "k_max", "sample_size",
                                            "pca_variance", "random_state")} == {
        "min_events": 3, "n_segments": 3, "k_min": 3, "k_max": 4, "sample_size": 150, "pca_variance": 0.7,
        "random_state": 7}
    metrics = dict(warehouse.df("select metric_name, metric_value from segment_model_metrics "
                                "where segment_id is null and component is null").values)
    eligible = warehouse.scalar("select count(*) from user_features where events >= 3")
    assert eligible > 150
    assert metrics["eligible_users"] == eligible  # min_events
    assert metrics["training_users"] == 150  # fit_sample_size
    assert metrics["n_segments"] == 3  # n_segments
    assert warehouse.scalar("select count(*) from segment_profiles") == 3
    # pca_variance: the fewest components reaching 70 % of the variance are kept.
    curve = warehouse.df("select component, cumulative_explained_variance, is_kept from segment_pca_components "
                         "order by component")
    kept = int(curve.is_kept.sum())
    assert kept == metrics["pca_components"] == 1 + int((curve.cumulative_explained_variance < 0.7).sum())
    assert kept < 1 + int((curve.cumulative_explained_variance < 0.85).sum())  # fewer than the default keeps
    # k_min, k_max and random_seed: the k scan of the analyses.
    scan = warehouse.df("select k, random_seed from segment_k_selection")
    assert sorted(scan.k) == [3, 4] and set(scan.random_seed) == {7}
    assert set(warehouse.df("select random_seed from segment_classifier_cv").random_seed) == {7}
    # max_rejection_rate: the new file, one rejected line in 1,700, is over 0.0001.
    assert re.search(r"WARN 1 in_range_stg_event_loads_rejection_rate", second.stdout), second.stdout
    assert "RuntimeWarning" not in second.stdout + second.stderr


def test_scoring_uses_the_min_events_of_the_model(sparse_then_changed):
    warehouse, _, _ = sparse_then_changed
    statuses = dict(warehouse.df("select segment_status, count(*) from user_segments group by 1").values)
    assert statuses["scored"] == warehouse.scalar("select count(*) from user_features where events >= 3")
    assert statuses["not_enough_history"] == warehouse.scalar("select count(*) from user_features where events < 3")
    threshold = warehouse.df("select min_events from segment_threshold_curve where is_current_setting")
    assert list(threshold.min_events) in ([3], [])  # the grid may not hold 3 shoppers' worth of 6 events
    # Another min_events without a retraining: the scoring keeps the model's and says so.
    before = warehouse.df("select user_id, segment_status, segment_id from user_segments order by user_id")
    rerun = warehouse.segments("dbt", "--", "run", "--select", "user_segments", "--vars", "{min_events: 2}")
    assert ("scoring with min_events = 3, the value model version 1 was fitted with; the min_events var (2) "
            "applies from the next version") in rerun.stdout
    after = warehouse.df("select user_id, segment_status, segment_id from user_segments order by user_id")
    assert before.equals(after)


def test_the_default_rejection_rate_does_not_warn_for_one_line_in_1700(sparse_then_changed):
    warehouse, _, _ = sparse_then_changed
    result = warehouse.segments("dbt", "--", "test", "--select", "stg_event_loads,test_name:in_range")
    assert re.search(r"PASS in_range_stg_event_loads_rejection_rate", result.stdout), result.stdout


@pytest.mark.parametrize("limit", [None, "1GB"])
def test_the_duckdb_memory_limit_reaches_dbt_and_the_loader(real_warehouse, tmp_path, limit):
    """SEGMENTS_DUCKDB_MEMORY_LIMIT, and its default (settings.DEFAULT_DUCKDB_MEMORY_LIMIT, chosen in
    docs/benchmarks.md), is the limit of dbt's connection and of the loader's."""
    import duckdb

    from conftest import copy_warehouse
    from shopper_segments import settings

    expected_limit = limit or settings.DEFAULT_DUCKDB_MEMORY_LIMIT
    with duckdb.connect(config={"memory_limit": expected_limit}) as con:
        expected = con.sql("select current_setting('memory_limit')").fetchall()[0][0]
    env = {"SEGMENTS_DUCKDB_MEMORY_LIMIT": limit} if limit else {}
    warehouse = copy_warehouse(real_warehouse, tmp_path / "wh")
    shown = warehouse.segments("dbt", "--", "show", "--inline", "select current_setting('memory_limit') as limit_now",
                               **env)
    assert expected in shown.stdout, shown.stdout
    loaded = warehouse.segments("load", "--events", str(OCTOBER_HEAD), **env)
    assert f"DuckDB memory limit {expected}:" in loaded.stdout, loaded.stdout
