"""Redundancy, separation and permutation importance of every candidate feature, per model version.

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.model.analyses.k_and_features.feature_analysis, shared with `segments fit`.
"""

from shopper_segments.model.duckdb_inputs import analysis_model


def model(dbt, session):
    return analysis_model(
        dbt, session, "feature_analysis",
        dbt.ref("segment_model"),
        dbt.ref("user_features"),
        dbt.ref("segment_features"),
    )
