"""KMeans against other algorithms, feature sets and preprocessings, per model version.

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.evaluation.method_comparison, shared with `segments fit`.
"""

from shopper_segments import duckdb_inputs, evaluation


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append")
    study = duckdb_inputs.study_inputs(session, dbt.ref("user_features"), dbt.ref("segment_features"))
    analysed = duckdb_inputs.analysed_versions(dbt, session)
    return evaluation.method_comparison(dbt.ref("segment_model").df(), analysed, study)
