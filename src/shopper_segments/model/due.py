"""Whether a dbt Python model of the segmentation has anything to do, decided before scikit-learn is
imported: a run with nothing to fit or analyse (a daily run) imports none of it, which costs about
0.7 s of a day's build, and returns no rows in the table's own shape.

The rules are those of the fit and the analyses, read cheaply: `segment_model` fits when it has no
version yet or `retrain` is set (training.fit_if_due); an analysis computes the rows of the latest
model version once (analyses.study.pending_model).
"""

from __future__ import annotations

from typing import Any, Mapping


def retrain_requested(meta: Mapping[str, Any] | None) -> bool:
    """The `retrain` var, as segment_model's config carries it (`meta.retrain`)."""
    return str((meta or {}).get("retrain", False)).strip().lower() == "true"


def fit_may_be_due(dbt, session, meta: Mapping[str, Any] | None) -> bool:
    """False when segment_model keeps its current version: it holds one and no retrain is asked."""
    if not dbt.is_incremental or retrain_requested(meta):
        return True
    return session.sql(f"select count(*) from {dbt.this}").fetchall()[0][0] == 0


def analysis_may_be_due(dbt, session, fitted_params) -> bool:
    """False when an analysis table already holds the latest model version, or there is none."""
    if not dbt.is_incremental:
        return True
    latest = fitted_params.aggregate("max(model_version)").fetchall()[0][0]
    if latest is None:
        return False
    return session.sql(f"select count(*) from {dbt.this} where model_version = {int(latest)}").fetchall()[0][0] == 0


def no_new_rows(dbt, session):
    """An empty result with the columns of the model's own table (an incremental append adds nothing)."""
    return session.sql(f"select * from {dbt.this} where false")
