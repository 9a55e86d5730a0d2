"""The main job end to end, on the real October head and on generated data: real loads, real dbt builds."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from shopper_segments.model import params as model_params, reference_features, training
from conftest import OCTOBER_HEAD, PROJECT

MAIN_TABLES = [
    "stg_events",
    "stg_events_rejected",
    "stg_event_loads",
    "int_sessions",
    "user_features",
    "segment_model",
    "segment_model_metrics",
    "segment_labels",
    "user_segments",
    "segment_profiles",
]


def file_lines(path) -> list[str]:
    """Physical lines of an event file, header included, read without the project's code."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        text = handle.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def test_real_head_every_raw_row_is_accounted_for(real_warehouse):
    lines = file_lines(OCTOBER_HEAD)
    data = lines[1:]  # the header
    broken = [(number, line) for number, line in enumerate(lines, start=1) if number > 1 and line.count(",") != 8]
    valid = [line for line in data if line.count(",") == 8]
    duplicates = len(valid) - len(set(valid))
    assert len(broken) == 1 and duplicates == 5  # what SOURCES.md says of the file

    audit = real_warehouse.df("select * from stg_event_loads").iloc[0]
    assert audit.rows_in_file == len(data)
    assert audit.rows_read == audit.rows_accepted + audit.rows_rejected + audit.rows_duplicate
    assert audit.rows_rejected == len(broken)
    assert audit.rows_duplicate == duplicates
    assert audit.rows_accepted == len(set(valid))
    assert real_warehouse.scalar("select count(*) from stg_events") == len(set(valid))

    rejected = real_warehouse.df("select * from stg_events_rejected")
    assert list(rejected.reject_reason) == ["wrong_field_count"]
    assert list(rejected.line_number) == [broken[0][0]]
    assert list(rejected.raw_line) == [broken[0][1]]


def test_real_head_zero_prices_are_kept_as_unknown(real_warehouse):
    prices = [float(line.split(",")[6]) for line in set(file_lines(OCTOBER_HEAD)[1:]) if line.count(",") == 8]
    assert sum(price <= 0 for price in prices) == 19
    assert real_warehouse.scalar("select count(*) from stg_events where price is null") == sum(p == 0 for p in prices)
    assert real_warehouse.scalar("select count(*) from stg_events where price <= 0") == 0


@pytest.mark.parametrize("warehouse_name", ["real_warehouse", "demo_warehouse"])
def test_main_job_fills_every_table(request, warehouse_name):
    warehouse = request.getfixturevalue(warehouse_name)
    for table in MAIN_TABLES:
        assert warehouse.scalar(f"select count(*) from {table}") > 0, f"{table} is empty"


def test_demo_rejects_and_duplicates_reconcile(demo_warehouse, demo_events):
    audit = demo_warehouse.df("select * from stg_event_loads order by load_id")
    assert len(audit) == len(demo_events.files) + 1  # plus the real November head
    assert (audit.rows_read == audit.rows_in_file).all()
    assert (audit.rows_read == audit.rows_accepted + audit.rows_rejected + audit.rows_duplicate).all()
    raw_lines = sum(len(file_lines(path)) - 1 for path in demo_events.files)
    assert audit.rows_in_file.sum() == raw_lines + len(file_lines(PROJECT / "data/sample/2019-Nov-head-noheader.csv"))


MONEY_AVERAGES = ["avg_order_value", "avg_viewed_price", "avg_purchased_price"]


def _compare_features(warehouse, event_paths, users: int, seed: int):
    """user_features equals an independent pandas computation for a random sample of shoppers."""
    events = reference_features.read_events(event_paths)
    calendar = pd.read_csv(PROJECT / "seeds" / "marketing_calendar.csv", parse_dates=["calendar_date"])
    expected = reference_features.user_features(events, set(calendar.calendar_date.dt.date)).set_index("user_id")
    actual = warehouse.df("select * from user_features").set_index("user_id")
    assert set(actual.index) == set(expected.index)
    sample = np.random.default_rng(seed).choice(actual.index.to_numpy(), size=min(users, len(actual)), replace=False)
    # Money is exact (docs/data_quality.md): totals are equal decimals, averages equal floats, for every shopper.
    with warehouse.connect() as con:
        revenue = dict(con.sql("select user_id, revenue from user_features").fetchall())
    assert all(isinstance(value, Decimal) for value in revenue.values())
    assert revenue == expected["revenue"].to_dict()
    for column in MONEY_AVERAGES:
        pd.testing.assert_series_equal(actual[column].sort_index(), expected[column].sort_index(), check_exact=True,
                                       check_dtype=False, check_names=False, obj=column)
    numeric = [c for c in expected.columns if c in actual.columns and c not in ("top_category",)]
    for column in numeric:
        left = actual.loc[sample, column]
        right = expected.loc[sample, column].fillna(0) if column.startswith("share_") else expected.loc[sample, column]
        if np.issubdtype(left.dtype, np.datetime64):
            assert (left == right).all(), column
            continue
        np.testing.assert_allclose(left.astype(float), right.astype(float), rtol=1e-9, atol=1e-9, err_msg=column)
    assert (actual.loc[sample, "top_category"] == expected.loc[sample, "top_category"]).all()
    return numeric


def test_real_head_features_match_pandas(real_warehouse):
    compared = _compare_features(real_warehouse, [OCTOBER_HEAD], users=400, seed=1)
    assert len(compared) >= 30


def test_demo_features_match_pandas(demo_warehouse, demo_events):
    compared = _compare_features(
        demo_warehouse, [*demo_events.files, PROJECT / "data/sample/2019-Nov-head-noheader.csv"], users=500, seed=2
    )
    assert {"cart_abandonment_rate", "cart_to_purchase_rate", "marketing_period_share", "removes"} <= set(compared)


def refit_from_warehouse(warehouse):
    """Fit again, in this process, on what the warehouse holds: the same code, data and settings."""
    with warehouse.connect() as con:
        features = con.sql("select * from user_features order by user_id").df()
        config = dict(
            con.sql(
                "select param_name, value from segment_model where param_group = 'config' and value is not null "
                "and model_version = (select max(model_version) from segment_model)"
            ).fetchall()
        )
        stored = con.sql("select * from segment_model where model_version = (select max(model_version) from segment_model)").df()
        inputs = training.TrainingInputs(
            eligible_user_ids=features.loc[features.events >= config["min_events"], "user_id"].to_numpy(),
            fetch_features=lambda ids: features[features.user_id.isin(ids)].reset_index(drop=True),
            feature_config=con.sql("select * from segment_features").df(),
            personas=con.sql("select * from segment_personas").df(),
            traits=con.sql("select * from segment_persona_traits").df(),
        )
    settings = model_params.FitSettings.from_config(lambda name, default: config.get(name, default))
    params, model = training.train_new_version(inputs, settings, None, None)
    return features, stored, params, model


@pytest.mark.parametrize("warehouse_name", ["real_warehouse", "demo_warehouse"])
def test_sql_scoring_equals_sklearn_predict(request, warehouse_name):
    warehouse = request.getfixturevalue(warehouse_name)
    features, stored, params, model = refit_from_warehouse(warehouse)
    fingerprint = stored.loc[stored.param_name == "fingerprint", "text_value"].item()
    assert params.loc[params.param_name == "fingerprint", "text_value"].item() == fingerprint

    key = ["param_group", "param_name", "feature_name", "component", "segment_id"]
    numeric = ["preprocess", "pca", "kmeans"]

    def numeric_params(frame):
        rows = frame[frame.param_group.isin(numeric)]
        return rows.assign(**{k: rows[k].astype(str) for k in key}).set_index(key).value.sort_index()

    pd.testing.assert_series_equal(numeric_params(params), numeric_params(stored), rtol=1e-12, atol=1e-12)

    eligible = features[features.events >= model.settings.min_events]
    predicted = pd.Series(model.predict(eligible), index=eligible.user_id.to_numpy())
    scored = warehouse.df("select user_id, segment_id from user_segments where segment_status = 'scored'")
    scored = scored.set_index("user_id").segment_id
    assert len(scored) == len(predicted) > 0
    agreement = (scored.loc[predicted.index].to_numpy() == predicted.to_numpy()).mean()
    assert agreement == 1.0

    waiting = warehouse.df("select user_id from user_segments where segment_status = 'not_enough_history'")
    assert set(waiting.user_id) == set(features.loc[features.events < model.settings.min_events, "user_id"])


def test_running_the_main_job_again_changes_no_row(real_warehouse):
    before = real_warehouse.digest()
    result = real_warehouse.segments("run", "--events", str(OCTOBER_HEAD))
    assert "1 already loaded" in result.stdout
    after = real_warehouse.digest()
    assert before == after


def test_every_model_and_column_is_documented(real_warehouse):
    real_warehouse.segments("dbt", "--", "docs", "generate")
    manifest = json.loads((real_warehouse.target_dir / "manifest.json").read_text())
    catalog = json.loads((real_warehouse.target_dir / "catalog.json").read_text())
    missing = []
    documented_nodes = 0
    for unique_id, node in {**manifest["nodes"], **manifest["sources"]}.items():
        if node["resource_type"] not in ("model", "seed", "source") or node["package_name"] != "shopper_segments":
            continue
        documented_nodes += 1
        if not node["description"].strip():
            missing.append(unique_id)
        entry = catalog["nodes"].get(unique_id) or catalog["sources"].get(unique_id)
        assert entry is not None, f"{unique_id} is not in the catalogue"
        for column in entry["columns"]:
            described = {name.lower(): c["description"] for name, c in node["columns"].items()}
            if not described.get(column.lower(), "").strip():
                missing.append(f"{unique_id}.{column}")
    assert documented_nodes >= 15
    assert missing == []
