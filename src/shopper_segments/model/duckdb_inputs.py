"""Inputs of the fit and of the analyses, read from DuckDB relations (what `dbt.ref` gives a
dbt Python model on dbt-duckdb). Lazy: a relation is only read when the library asks for it, so
a daily run with nothing to fit or analyse reads (almost) nothing, and imports neither pandas nor
scikit-learn (`due`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import due

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .analyses.study import StudyInputs


def rows_of(session, relation, key: str, ids: np.ndarray) -> pd.DataFrame:
    """Rows of `relation` whose `key` is one of `ids`, sorted by `key`."""
    import numpy as np
    import pandas as pd

    chosen = session.from_df(pd.DataFrame({"chosen_key": np.asarray(ids, dtype=np.int64)}))
    return relation.join(chosen, f"{key} = chosen_key").order(key).df().drop(columns="chosen_key")


def study_inputs(session, user_features, feature_config) -> StudyInputs:
    """StudyInputs over the user_features relation and the segment_features seed relation."""
    from .analyses.study import StudyInputs

    return StudyInputs(
        event_counts=lambda: user_features.project("user_id, events").df(),
        fetch_features=lambda ids: rows_of(session, user_features, "user_id", ids),
        feature_config=feature_config.df(),
    )


def analysed_versions(dbt, session) -> list[int]:
    """Model versions already in this incremental table (none on its first build)."""
    if not dbt.is_incremental:
        return []
    return [int(v) for v in session.sql(f"select distinct model_version from {dbt.this}").fetchnumpy()["model_version"]]


def analysis_model(dbt, session, analysis: str, fitted_params, user_features, feature_config,
                   events=None, marketing_calendar=None, meta=None) -> pd.DataFrame:
    """The body of every per-version analysis model (python_models/segment_<analysis>.py): read the
    inputs lazily, skip the versions already analysed, return the rows of `analyses.ANALYSES[analysis]`.

    The model files keep only what dbt must read in them literally: their `dbt.ref(...)` calls (the
    DAG) and `dbt.config.get(...)`; materialization and strategy are in _python_models.yml. The
    threshold curve also re-derives features from sampled events (`events`, the calendar and the
    night hours of `meta`).
    """
    if not due.analysis_may_be_due(dbt, session, fitted_params):
        return due.no_new_rows(dbt, session)
    # Something to analyse: the analyses and scikit-learn are imported now, not on a daily run.
    from .analyses import ANALYSES, threshold

    study = study_inputs(session, user_features, feature_config)
    extra = {}
    if events is not None:
        projected = events.project(threshold.EVENT_COLUMNS)
        extra = dict(
            fetch_events=lambda user_ids: rows_of(session, projected, "user_id", user_ids),
            marketing_calendar=marketing_calendar.df(),
            night_hours=threshold.night_hours(meta),
        )
    return ANALYSES[analysis](fitted_params.df(), analysed_versions(dbt, session), study, **extra)

