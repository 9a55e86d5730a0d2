"""The minimum-events threshold, measured: per n, how often a shopper keeps their segment when it
is computed from n of their events, and the share of shoppers reaching n; the recommended n is
the default of the `min_events` var.

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.model.analyses.threshold.threshold_curve, shared with `segments fit`.
"""

from shopper_segments.model.duckdb_inputs import analysis_model


def model(dbt, session):
    return analysis_model(
        dbt, session, "threshold_curve",
        dbt.ref("segment_model"),
        dbt.ref("user_features"),
        dbt.ref("segment_features"),
        events=dbt.ref("stg_events"),
        marketing_calendar=dbt.ref("marketing_calendar"),
        meta=dbt.config.get("meta"),
    )
