"""Stratified k-fold cross-validation of K-NN, decision tree and SVM assigning the segments, per model version.

Computed once, for the latest model version, in the build that fits it (then nothing to do until
the next version): shopper_segments.model.analyses.assignment.classifier_cv, shared with `segments fit`.
"""

from shopper_segments.model.duckdb_inputs import analysis_model


def model(dbt, session):
    return analysis_model(
        dbt, session, "classifier_cv",
        dbt.ref("segment_model"),
        dbt.ref("user_features"),
        dbt.ref("segment_features"),
    )
