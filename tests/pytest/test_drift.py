"""Drift (issue 16): each run's verdict on how far the shoppers moved from the model's training data,
the shopper flow, source freshness and `segments run --retrain-if-drifted`. Real loads and dbt builds:
ONE small base warehouse (300 generated `planted` shoppers, eleven days of daily files, one model version),
copied for two branches: one more day from the same generation (an unchanged distribution), and
three days in which the same shoppers behave as another world (a changed behaviour mix)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from shopper_segments.generate import generate_events
from shopper_segments.model import drift
from conftest import Warehouse, copy_warehouse

USERS, DAYS, SEED = 300, 12, 5


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_events(tmp_path_factory.mktemp("drift_events"), users=USERS, start="2019-10-01", days=DAYS,
                           seed=SEED, split="day", gzip=True, progress=False, world="planted")


@pytest.fixture(scope="module")
def base(tmp_path_factory, generated) -> Warehouse:
    """Eleven days landed and built: model version 1 and the first segment_drift run."""
    landing = tmp_path_factory.mktemp("drift_landing")
    for path in generated.files[:-1]:
        shutil.copy(path, landing / path.name)
    warehouse = Warehouse(tmp_path_factory.mktemp("drift_base"))
    warehouse.segments("run", "--events", str(landing))
    return warehouse


@pytest.fixture(scope="module")
def unchanged(base, generated, tmp_path_factory):
    """The base, then the generation's last day (same shoppers, same behaviour): run --retrain-if-drifted."""
    warehouse = copy_warehouse(base, tmp_path_factory.mktemp("drift_unchanged"))
    result = warehouse.segments("run", "--retrain-if-drifted", "--events", str(generated.files[-1]))
    return warehouse, result


@pytest.fixture(scope="module")
def shifted(base, tmp_path_factory):
    """The base, then three days in which the same shoppers (same seed: same ids) shop as the
    `calibrated` world in a cosmetics store: another view/cart/purchase and category mix."""
    days = generate_events(tmp_path_factory.mktemp("drift_shift_events"), users=USERS,
                           start=f"2019-10-{DAYS:02d}", days=3, seed=SEED, split="day", gzip=True,
                           progress=False, world="calibrated", flavour="cosmetics")
    warehouse = copy_warehouse(base, tmp_path_factory.mktemp("drift_shifted"))
    result = warehouse.segments("run", "--retrain-if-drifted", "--events", str(days.files[0].parent))
    return warehouse, result


def newest_run(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.df("select * from segment_drift where run_id = "
                        "(select run_id from segment_drift order by run_started_at desc limit 1)")


def test_the_fit_stores_each_features_training_bins(base):
    bins = base.df("select feature_name, component, param_name, value from segment_model "
                   "where param_group = 'drift' and model_version = 1")
    features = base.df("select feature_name from segment_model where param_group = 'preprocess' "
                       "and param_name = 'position' and model_version = 1")
    assert set(bins.feature_name) == set(features.feature_name)
    shares = bins[bins.param_name == "training_share"].groupby("feature_name").value.sum()
    assert np.allclose(shares, 1.0)
    # deciles: at most 10 bins of values plus the missing bin
    assert bins[bins.param_name == "training_share"].groupby("feature_name").size().max() <= 11


def test_first_run_compares_the_training_data_with_itself(base):
    """Run 1 scores the shoppers the model was fitted on: no feature drifts, every scored shopper is new."""
    run = newest_run(base)
    assert set(run.verdict) == {"stable"}
    psi = run[run.measure_type == "feature_psi"]
    assert len(psi) > 5 and psi.psi.max() < 0.1
    flow = run[run.measure_type == "shopper_flow"].set_index("measure_name").current_value
    assert flow["newly_scored"] == flow["scored"] > 0 and flow["changed_segment"] == 0 and flow["left"] == 0


def test_an_unchanged_day_is_stable_and_does_not_retrain(unchanged):
    warehouse, result = unchanged
    assert warehouse.scalar("select count(distinct run_id) from segment_drift") == 2
    run = newest_run(warehouse)
    assert set(run.verdict) == {"stable"}, run[["measure_name", "psi"]].to_string()
    shares = run[run.measure_type == "segment_share"]
    assert shares.previous_value.notna().all()
    assert (shares.current_value - shares.training_value).abs().max() < 0.05
    assert warehouse.scalar("select max(model_version) from segment_model") == 1
    assert "Drift verdict: stable" in result.stdout
    assert "no retraining" in result.stdout


def test_a_shifted_behaviour_mix_recommends_retraining_names_the_features_and_retrains(shifted):
    warehouse, result = shifted
    runs = warehouse.df("select run_id, min(run_started_at) as started, min(verdict) as verdict, "
                        "min(model_version) as model_version from segment_drift group by run_id order by started")
    # base run, the shifted run (against version 1), then the run after --retrain-if-drifted (version 2)
    assert list(runs.model_version) == [1, 1, 2]
    assert runs.verdict.iloc[1] == "retrain recommended"
    shifted_run = warehouse.df(f"select * from segment_drift where run_id = '{runs.run_id.iloc[1]}'")
    drifting = shifted_run[(shifted_run.measure_type == "feature_psi") & (shifted_run.psi >= 0.25)]
    assert len(drifting) >= 1
    assert (drifting.measure_status == "retrain recommended").all()
    # The run's verdict line names the features that are not stable, largest PSI first, at most five.
    verdict = next(line for line in result.stdout.splitlines() if line.startswith("Drift verdict: retrain recommended"))
    named = verdict.split("drifting features: ", 1)[1].split(";")[0]
    not_stable = shifted_run[(shifted_run.measure_type == "feature_psi") & (shifted_run.measure_status != "stable")]
    largest = not_stable.sort_values("psi", ascending=False).measure_name.head(5)
    assert [item.split(" (PSI")[0] for item in named.split(", ")] == list(largest)
    assert warehouse.scalar("select max(model_version) from segment_model") == 2
    flow = shifted_run[shifted_run.measure_type == "shopper_flow"].set_index("measure_name").current_value
    assert flow["changed_segment"] > 0


def test_the_drift_warning_test_warns_on_the_shifted_run_only(unchanged, shifted):
    assert "assert_segment_drift_is_stable" in shifted[1].stdout
    warned = [line for line in shifted[1].stdout.splitlines() if "WARN" in line and "assert_segment_drift" in line]
    assert warned
    assert not [line for line in unchanged[1].stdout.splitlines()
                if "WARN" in line and "assert_segment_drift_is_stable" in line]


def test_psi_in_sql_matches_python(unchanged):
    """The SQL bins and PSI agree with drift.py's on the same shoppers."""
    warehouse, _ = unchanged
    run = newest_run(warehouse)
    bins = warehouse.df("select feature_name, component, param_name, value from segment_model "
                        "where param_group = 'drift' and model_version = 1")
    features = warehouse.df("select * from user_features where events >= "
                            "(select value from segment_model where model_version = 1 and param_group = 'config' "
                            "and param_name = 'min_events')")
    for feature, rows in bins.groupby("feature_name"):
        edges = rows[(rows.param_name == "upper_edge") & rows.value.notna()].sort_values("component").value.to_numpy()
        training = rows[rows.param_name == "training_share"].sort_values("component").value.to_numpy()
        current = np.bincount(drift.bin_of(features[feature], edges), minlength=len(training)) / len(features)
        expected = drift.population_stability_index(training, current)
        sql = run.loc[(run.measure_type == "feature_psi") & (run.measure_name == feature), "psi"].iloc[0]
        assert sql == pytest.approx(expected, abs=1e-9), feature


def test_source_freshness_passes_on_fresh_files_and_warns_on_stale_ones(base, tmp_path):
    warehouse = copy_warehouse(base, tmp_path / "fresh")
    fresh = warehouse.segments("dbt", "source", "freshness", check=False)
    assert fresh.returncode == 0, fresh.stdout
    assert "PASS" in fresh.stdout and "event_files" in fresh.stdout
    import duckdb

    with duckdb.connect(str(warehouse.path)) as con:  # the files stopped arriving three days ago
        con.execute("update raw.event_files set loaded_at = loaded_at - interval 3 day")
    stale = warehouse.segments("dbt", "source", "freshness", check=False)
    assert "WARN" in stale.stdout and "event_files" in stale.stdout, stale.stdout
    # The newest event's freshness is off by default (historic events); turned on, 2019 events are stale.
    events = warehouse.segments("dbt", "source", "freshness", "--vars",
                                json.dumps({"check_event_time_freshness": True}), check=False)
    assert "clean_events.stg_events" in events.stdout and "ERROR STALE" in events.stdout, events.stdout


def test_segments_run_prints_the_freshness_line(unchanged):
    _, result = unchanged
    line = [text for text in result.stdout.splitlines() if text.startswith("Source freshness:")]
    assert line == [line[0]] and "raw.event_files PASS" in line[0]


def test_the_report_opens_with_what_changed(unchanged, tmp_path):
    warehouse, _ = unchanged
    output = tmp_path / "report.html"
    warehouse.segments("report", "--output", str(output), "--pca-sample", "300")
    text = output.read_text(encoding="utf-8")
    assert text.index("<h2>What changed</h2>") < text.index("<h2>Are there segments?</h2>")
    section = text.split("<h2>What changed</h2>")[1].split("<h2>")[0]
    assert 'id="drift-verdict"><b>Stable</b>' in section
    assert "Segment shares" in section and "Top drifting features" in section
    assert "Since the previous run:" in section


def test_the_psi_thresholds_are_the_vars(unchanged, generated, tmp_path):
    """drift_psi_drifting / drift_psi_retrain (README): the same run's PSIs get the verdict the vars say."""
    warehouse = copy_warehouse(unchanged[0], tmp_path / "thresholds")
    largest = warehouse.scalar("select max(psi) from segment_drift where measure_type = 'verdict' "
                               "and run_started_at = (select max(run_started_at) from segment_drift)")
    assert 0 < largest < 0.1
    warehouse.segments("run", "--events", str(generated.files[-1]))  # nothing new: no run appended
    assert warehouse.scalar("select count(distinct run_id) from segment_drift") == 2
    for thresholds, expected in [({"drift_psi_drifting": largest / 2, "drift_psi_retrain": 1000}, "drifting"),
                                 ({"drift_psi_drifting": largest / 4, "drift_psi_retrain": largest / 2},
                                  "retrain recommended")]:
        warehouse.segments("dbt", "run", "--select", "segment_drift", "--full-refresh", "--vars", json.dumps(thresholds))
        assert newest_run(warehouse).verdict.iloc[0] == expected
