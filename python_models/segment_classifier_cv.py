"""Stratified k-fold cross-validation of K-NN, decision tree and SVM assigning the segments, per model version.

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.evaluation.classifier_cv, shared with `segments fit`.
"""

from shopper_segments import duckdb_inputs, evaluation


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append")
    study = duckdb_inputs.study_inputs(session, dbt.ref("user_features"), dbt.ref("segment_features"))
    analysed = duckdb_inputs.analysed_versions(dbt, session)
    return evaluation.classifier_cv(dbt.ref("segment_model").df(), analysed, study)
