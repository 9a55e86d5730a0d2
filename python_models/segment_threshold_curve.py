"""The minimum-events threshold, measured: per n, how often a shopper keeps their segment when it
is computed from n of their events, and the share of shoppers reaching n; the recommended n is
the default of the `min_events` var.

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.evaluation.threshold_curve, shared with `segments fit`.
"""

from shopper_segments import duckdb_inputs, evaluation


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append")
    meta = dbt.config.get("meta")  # the night hours (vars), see _python_models.yml
    study = duckdb_inputs.study_inputs(session, dbt.ref("user_features"), dbt.ref("segment_features"))
    analysed = duckdb_inputs.analysed_versions(dbt, session)
    events = dbt.ref("stg_events").project(
        "event_time, event_type, product_id, category_id, category_code, category_l1, brand, price, user_id, user_session"
    )
    return evaluation.threshold_curve(
        dbt.ref("segment_model").df(),
        analysed,
        study,
        fetch_events=lambda user_ids: duckdb_inputs.rows_of(session, events, "user_id", user_ids),
        marketing_calendar=dbt.ref("marketing_calendar").df(),
        night_hours=(int(meta["night_start_hour"]), int(meta["night_end_hour"])),
    )
