"""The k scan of each model version (criteria and bootstrap stability per k, the choice and its reason).

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.model.analyses.k_and_features.k_selection, shared with `segments fit`.
"""

from shopper_segments.model.duckdb_inputs import analysis_model


def model(dbt, session):
    return analysis_model(
        dbt, session, "k_selection",
        dbt.ref("segment_model"),
        dbt.ref("user_features"),
        dbt.ref("segment_features"),
    )
