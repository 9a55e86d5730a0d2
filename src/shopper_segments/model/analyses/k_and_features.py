"""Post-fit analyses of the k scan and of the features (see `analyses`).

- `k_selection`:      the k scan the fit used, one row per k (criteria, stability, the choice).
- `feature_analysis`: per candidate feature: redundancy (correlation), separation of the segments,
                      permutation importance through a surrogate classifier.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from .. import selection
from ..params import FitSettings, HeavyTailPreprocessor, build_preprocessing, feature_specs, single_threaded
from .study import (
    ANALYSIS,
    StudyInputs,
    empty_frame,
    model_specs,
    pending_model,
    seeded_sample,
    study_sample,
    typed_frame,
)


# --------------------------------------------------------------------------------------------------
# k selection
# --------------------------------------------------------------------------------------------------

K_SELECTION_COLUMNS = {
    "model_version": "int64",
    **selection.SCAN_COLUMNS,
    "is_stable": "bool",
    "is_elbow": "bool",
    "is_chosen": "bool",
    "reason": "string",
    "sample_users": "int64",
    "bootstraps": "int64",
    "random_seed": "int64",
}


@single_threaded
def k_selection(params: pd.DataFrame, analysed_versions: Iterable[int], study: StudyInputs) -> pd.DataFrame:
    """The k scan of the latest version as the fit ran it, with the choice and the rule's filters.

    The fit stores its scan with the version (`k_scan` rows of segment_model); when k was fixed (no
    scan stored) it is run here on the same sample with the same seeds, for information. `is_chosen`
    marks the k the stored model has.
    """
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return empty_frame(K_SELECTION_COLUMNS)
    training = study_sample(stored, study)
    specs = model_specs(stored, study.feature_config)
    projected = build_preprocessing(specs, stored.settings).fit_transform(training[stored.features].to_numpy(float))
    scan = stored_scan(params, stored.version)
    if scan is None:
        scan = selection.scan_k(projected, stored.settings)
    reason = stored.params.loc[stored.params["param_name"] == "k_selection_reason", "text_value"]
    choice = selection.KChoice(len(stored.segment_ids), reason.iloc[0] if len(reason) else "", scan)
    table = selection.k_selection_table(
        scan, choice, stored.settings, len(selection.scan_sample(projected, stored.settings))
    )
    table.insert(0, "model_version", stored.version)
    return table[list(K_SELECTION_COLUMNS)].astype(K_SELECTION_COLUMNS)


def stored_scan(params: pd.DataFrame, version: int) -> pd.DataFrame | None:
    """The `k_scan` rows of a version as the scan frame (selection.SCAN_COLUMNS), None if not stored."""
    rows = params[(params["model_version"] == version) & (params["param_group"] == "k_scan")]
    if rows.empty:
        return None
    scan = rows.pivot_table(index="component", columns="param_name", values="value", dropna=False).reset_index()
    scan.columns = [str(column) for column in scan.columns]  # plain names, as the scan's own frame has
    scan = scan.rename(columns={"component": "k"}).sort_values("k")
    for column in selection.NULL_SCAN_COLUMNS:  # not measured by versions fitted before the scan had a null
        if column not in scan.columns:
            scan[column] = np.nan
    return scan[list(selection.SCAN_COLUMNS)].astype(selection.SCAN_COLUMNS).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------

FEATURE_COLUMNS = {
    "model_version": "int64",
    "feature_name": "string",
    "family": "string",
    "in_model": "bool",
    "most_correlated_feature": "string",
    "max_abs_correlation": "float64",
    "kept_by_pruning": "boolean",
    "pruned_in_favour_of": "string",
    "separation_eta_squared": "float64",
    "permutation_importance": "float64",
    "permutation_importance_std": "float64",
    "importance_rank": "Int64",
    "surrogate_accuracy": "float64",
    "sample_users": "int64",
    "random_seed": "int64",
}


def candidate_matrix(frame: pd.DataFrame, feature_config: pd.DataFrame, settings: FitSettings) -> pd.DataFrame:
    """Every configured feature, imputed, log1p-compressed and winsorised as the model would."""
    specs = feature_specs(feature_config.assign(in_model="true"))
    specs = [s for s in specs if s.name in frame.columns]
    pre = HeavyTailPreprocessor(specs, settings.clip_low_quantile, settings.clip_high_quantile)
    values = pre.fit_transform(frame[[s.name for s in specs]].to_numpy(float))
    return pd.DataFrame(values, columns=[s.name for s in specs])


def eta_squared(values: pd.DataFrame, labels: np.ndarray) -> pd.Series:
    """Share of each feature's variance explained by the segments (0 = no separation, 1 = perfect)."""
    total = values.var(ddof=0)
    within = values.groupby(labels).transform(lambda column: column - column.mean()).var(ddof=0)
    return (1 - within / total.replace(0, np.nan)).fillna(0.0)


def correlation_pruning(correlation: pd.DataFrame, order: list[str], threshold: float) -> dict[str, str | None]:
    """Greedy pruning: walk the features in `order`, drop one when |rho| >= threshold with a kept one.

    Returns feature -> None (kept) or the kept feature it duplicates.
    """
    kept: list[str] = []
    verdict: dict[str, str | None] = {}
    for feature in order:
        twins = [k for k in kept if abs(correlation.loc[feature, k]) >= threshold]
        verdict[feature] = twins[0] if twins else None
        if not twins:
            kept.append(feature)
    return verdict


@single_threaded
def feature_analysis(params: pd.DataFrame, analysed_versions: Iterable[int], study: StudyInputs) -> pd.DataFrame:
    """Redundancy, separation and importance of every candidate feature for the latest version."""
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return empty_frame(FEATURE_COLUMNS)
    seed = stored.settings.random_state
    sample = seeded_sample(study_sample(stored, study), ANALYSIS.sample_size, seed)
    labels = stored.predict(sample)
    candidates = candidate_matrix(sample, study.feature_config, stored.settings)
    correlation = candidates.corr(method="spearman").fillna(0.0)
    separation = eta_squared(candidates, labels)

    in_model = [f for f in stored.features if f in candidates.columns]
    by_separation = sorted(in_model, key=lambda f: -separation[f])
    verdict = correlation_pruning(correlation, by_separation, ANALYSIS.redundancy_threshold)

    # Surrogate: a random forest learns the segments from the model features; permuting a feature
    # and measuring the accuracy lost on held-out shoppers says how much the assignment relies on it.
    X = sample[stored.features].to_numpy(float)
    X = np.where(np.isnan(X), stored.impute, X)
    stratify = labels if np.bincount(pd.factorize(labels)[0]).min() >= 2 else None
    X_train, X_test, y_train, y_test = train_test_split(X, labels, test_size=0.3, random_state=seed, stratify=stratify)
    surrogate = RandomForestClassifier(n_estimators=100, min_samples_leaf=3, random_state=seed, n_jobs=1)
    surrogate.fit(X_train, y_train)
    accuracy = accuracy_score(y_test, surrogate.predict(X_test))
    importance = permutation_importance(
        surrogate, X_test, y_test, n_repeats=ANALYSIS.permutation_repeats, random_state=seed, n_jobs=1
    )
    imp = pd.DataFrame(
        {"mean": importance.importances_mean, "std": importance.importances_std}, index=stored.features
    )
    rank = imp["mean"].rank(ascending=False, method="first").astype(int)

    config = study.feature_config.set_index("feature_name")
    rows = []
    for feature in candidates.columns:
        others = correlation.loc[feature, [f for f in in_model if f != feature]].abs()
        rows.append(
            {
                "model_version": stored.version,
                "feature_name": feature,
                "family": str(config.loc[feature, "family"]),
                "in_model": feature in stored.features,
                "most_correlated_feature": others.idxmax() if len(others) else None,
                "max_abs_correlation": float(others.max()) if len(others) else np.nan,
                "kept_by_pruning": (verdict[feature] is None) if feature in verdict else pd.NA,
                "pruned_in_favour_of": verdict.get(feature),
                "separation_eta_squared": float(separation[feature]),
                "permutation_importance": float(imp.loc[feature, "mean"]) if feature in imp.index else np.nan,
                "permutation_importance_std": float(imp.loc[feature, "std"]) if feature in imp.index else np.nan,
                "importance_rank": int(rank[feature]) if feature in rank.index else pd.NA,
                "surrogate_accuracy": float(accuracy),
                "sample_users": len(sample),
                "random_seed": seed,
            }
        )
    return typed_frame(rows, FEATURE_COLUMNS)


