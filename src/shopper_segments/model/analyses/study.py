"""What every post-fit analysis shares: its sizes, its inputs and the helpers that pick the model
version to analyse and the shoppers to study it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from ..params import FeatureSpec, StoredModel, choose_training_users, feature_specs


@dataclass(frozen=True)
class AnalysisSettings:
    """Sizes of the analyses (the seed is the model's `random_state`); all are recorded in the rows."""

    sample_size: int = 5_000  # shoppers for the comparisons, feature analysis and surrogate
    cv_sample_size: int = 4_000  # shoppers for the cross-validation and the rules
    cv_folds: int = 5
    agglomerative_sample_size: int = 3_000  # ward linkage is quadratic in memory
    comparison_resamples: int = 3  # subsample refits for the stability of each compared method
    permutation_repeats: int = 5
    redundancy_threshold: float = 0.9  # |Spearman rho| at which two features say the same thing
    threshold_grid: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)
    threshold_users: int = 3_000  # shoppers whose events are subsampled
    threshold_draws: int = 3  # independent subsamples per shopper and n (averaged: less noise)
    min_segment_users: int = 20  # segments with fewer evaluated shoppers do not enter the macro average
    reliable_agreement: float = 0.7  # a threshold is reliable when 7 shoppers in 10 keep their segment
    tree_max_depth: int = 5
    knn_neighbors: int = 15


ANALYSIS = AnalysisSettings()


@dataclass
class StudyInputs:
    """What the analyses read from the warehouse; callables, so nothing is read when nothing is pending.

    The dbt Python models build it from DuckDB relations (`duckdb_inputs`), `segments fit` from
    its own connection.
    """

    event_counts: Callable[[], pd.DataFrame]  # user_id, events of every shopper (user_features)
    fetch_features: Callable[[np.ndarray], pd.DataFrame]  # user_features rows of these ids, sorted by user_id
    feature_config: pd.DataFrame  # seed segment_features


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def pending_model(params: pd.DataFrame, analysed_versions: Iterable[int]) -> StoredModel | None:
    """The latest model version if it has not been analysed yet."""
    stored = StoredModel.from_params(params)
    if stored is None or stored.version in {int(v) for v in analysed_versions}:
        return None
    return stored


def model_specs(stored: StoredModel, feature_config: pd.DataFrame) -> list[FeatureSpec]:
    """The stored model's features, in its order, with their transform from the configuration."""
    by_name = {s.name: s for s in feature_specs(feature_config.assign(in_model="true"))}
    return [by_name.get(name, FeatureSpec(name, bool(log), "0", name)) for name, log in zip(stored.features, stored.log1p)]


def seeded_sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if len(frame) <= size:
        return frame.reset_index(drop=True)
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def extreme_users(stored: StoredModel, frame: pd.DataFrame) -> np.ndarray:
    """Shoppers above the 99th training percentile of at least one heavy-tailed (log1p) feature.

    These are the shoppers the winsorising actually bounds (bots, resellers, binge browsers).
    """
    values = frame[stored.features].to_numpy(dtype=float)
    values = np.where(np.isnan(values), stored.impute, values)
    values = np.where(stored.log1p, np.log1p(np.maximum(values, 0.0)), values)
    return ((values > stored.clip_high) & stored.log1p).any(axis=1)


def internal_metrics(space: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    if len(np.unique(labels)) < 2:
        return {"silhouette": np.nan, "davies_bouldin": np.nan, "calinski_harabasz": np.nan}
    return {
        "silhouette": float(silhouette_score(space, labels, sample_size=min(len(space), 5000), random_state=seed)),
        "davies_bouldin": float(davies_bouldin_score(space, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(space, labels)),
    }


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def typed_frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    if not rows:
        return empty_frame(columns)
    return pd.DataFrame.from_records(rows)[list(columns)].astype(columns)


def study_sample(stored: StoredModel, study: StudyInputs) -> pd.DataFrame:
    """The version's training shoppers: the fit's deterministic sample of eligible shoppers."""
    counts = study.event_counts()
    eligible = counts.loc[counts["events"] >= stored.settings.min_events, "user_id"].to_numpy()
    return study.fetch_features(choose_training_users(eligible, stored.settings))

