"""Each segment as readable decision-tree rules, per model version.

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.model.analyses.assignment.segment_rules, shared with `segments fit`.
"""

from shopper_segments.model.duckdb_inputs import analysis_model


def model(dbt, session):
    return analysis_model(
        dbt, session, "segment_rules",
        dbt.ref("segment_model"),
        dbt.ref("user_features"),
        dbt.ref("segment_features"),
    )
