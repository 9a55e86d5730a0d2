"""Inputs of the fit and of the analyses, read from DuckDB relations (what `dbt.ref` gives a
dbt Python model on dbt-duckdb). Lazy: a relation is only read when the library asks for it, so
a daily run with nothing to fit or analyse reads (almost) nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluation import StudyInputs


def rows_of(session, relation, key: str, ids: np.ndarray) -> pd.DataFrame:
    """Rows of `relation` whose `key` is one of `ids`, sorted by `key`."""
    chosen = session.from_df(pd.DataFrame({"chosen_key": np.asarray(ids, dtype=np.int64)}))
    return relation.join(chosen, f"{key} = chosen_key").order(key).df().drop(columns="chosen_key")


def study_inputs(session, user_features, feature_config) -> StudyInputs:
    """StudyInputs over the user_features relation and the segment_features seed relation."""
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
