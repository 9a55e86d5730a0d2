"""Post-fit analyses of a model version: the tables that explain and check the segmentation.

Each public function takes the parameter table (all versions), the versions it has already
analysed and the warehouse inputs, and returns the new rows of one table — for the latest model
version, once (an empty frame when that version is already analysed). So the expensive work runs
only when a model version is fitted, on bounded seeded samples recorded in the rows. They all
study the *stored* model (`modeling.StoredModel`, which predicts exactly as the SQL scoring does)
on the shoppers it was trained on.

- `k_selection`:        the k scan the fit used, one row per k (criteria, stability, the choice).
- `feature_analysis`:   per candidate feature: redundancy (correlation), separation of the segments,
                        permutation importance through a surrogate classifier.
- `method_comparison`:  KMeans against MiniBatchKMeans, a Gaussian mixture and agglomerative
                        clustering; the configured feature set against all candidates and the
                        correlation-pruned set; the outlier handling against weaker preprocessing,
                        each measured on all shoppers and without the extreme ones.
- `threshold_curve`:    how often a shopper keeps their segment when it is computed from n of
                        their events, against the share of shoppers reaching n; the n giving the
                        most shoppers a segment they keep is the recommended `min_events`.
- `classifier_cv`:      K-NN, decision tree and SVM trained to assign the segments, stratified
                        k-fold cross-validation (folds stratified by segment and extreme flag).
- `segment_rules`:      the decision tree's leaves as readable rules for each segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from sklearn.cluster import AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    f1_score,
    silhouette_score,
)
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from . import model_selection, reference_features
from .modeling import (
    FeatureSpec,
    FitSettings,
    HeavyTailPreprocessor,
    StoredModel,
    choose_training_users,
    feature_specs,
    single_threaded,
)


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


def _internal_metrics(space: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    if len(np.unique(labels)) < 2:
        return {"silhouette": np.nan, "davies_bouldin": np.nan, "calinski_harabasz": np.nan}
    return {
        "silhouette": float(silhouette_score(space, labels, sample_size=min(len(space), 5000), random_state=seed)),
        "davies_bouldin": float(davies_bouldin_score(space, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(space, labels)),
    }


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def _typed(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    if not rows:
        return _empty(columns)
    return pd.DataFrame.from_records(rows)[list(columns)].astype(columns)


def _study_sample(stored: StoredModel, study: StudyInputs) -> pd.DataFrame:
    """The version's training shoppers: the fit's deterministic sample of eligible shoppers."""
    counts = study.event_counts()
    eligible = counts.loc[counts["events"] >= stored.settings.min_events, "user_id"].to_numpy()
    return study.fetch_features(choose_training_users(eligible, stored.settings))


# --------------------------------------------------------------------------------------------------
# k selection
# --------------------------------------------------------------------------------------------------

K_SELECTION_COLUMNS = {
    "model_version": "int64",
    **model_selection.SCAN_COLUMNS,
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
    """The k scan of the latest version, recomputed exactly as the fit ran it (same sample, same seeds).

    The fit stores only the chosen k and the reason; the scan itself is this table. `is_chosen`
    marks the k the stored model has.
    """
    from .modeling import build_preprocessing

    stored = pending_model(params, analysed_versions)
    if stored is None:
        return _empty(K_SELECTION_COLUMNS)
    training = _study_sample(stored, study)
    specs = model_specs(stored, study.feature_config)
    projected = build_preprocessing(specs, stored.settings).fit_transform(training[stored.features].to_numpy(float))
    scan = model_selection.scan_k(projected, stored.settings)
    reason = stored.params.loc[stored.params["param_name"] == "k_selection_reason", "text_value"]
    choice = model_selection.KChoice(len(stored.segment_ids), reason.iloc[0] if len(reason) else "", scan)
    table = model_selection.k_selection_table(
        scan, choice, stored.settings, len(model_selection.scan_sample(projected, stored.settings))
    )
    table.insert(0, "model_version", stored.version)
    return table[list(K_SELECTION_COLUMNS)].astype(K_SELECTION_COLUMNS)


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
        return _empty(FEATURE_COLUMNS)
    seed = stored.settings.random_state
    sample = seeded_sample(_study_sample(stored, study), ANALYSIS.sample_size, seed)
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
    return _typed(rows, FEATURE_COLUMNS)


# --------------------------------------------------------------------------------------------------
# Alternatives: algorithms, feature sets, outlier handling
# --------------------------------------------------------------------------------------------------

COMPARISON_COLUMNS = {
    "model_version": "int64",
    "comparison": "string",
    "variant": "string",
    "is_production": "bool",
    "population": "string",
    "metric_name": "string",
    "metric_value": "float64",
    "sample_users": "int64",
    "random_seed": "int64",
}


def _fit_labels(method: str, space: np.ndarray, k: int, seed: int) -> np.ndarray:
    if method == "kmeans":
        return KMeans(k, n_init=10, random_state=seed).fit_predict(space)
    if method == "minibatch_kmeans":
        return MiniBatchKMeans(k, n_init=10, batch_size=1024, random_state=seed).fit_predict(space)
    if method == "gaussian_mixture":
        return GaussianMixture(k, covariance_type="full", n_init=2, random_state=seed).fit(space).predict(space)
    if method == "agglomerative_ward":
        return AgglomerativeClustering(k, linkage="ward").fit_predict(space)
    raise ValueError(method)


def _subsample_stability(method: str, space: np.ndarray, reference: np.ndarray, k: int, seed: int) -> float:
    """Mean ARI, on the shoppers they share, between the reference labels and refits on 80% subsamples."""
    rng = np.random.default_rng(seed + 77)
    scores = []
    for r in range(ANALYSIS.comparison_resamples):
        rows = np.sort(rng.choice(len(space), int(0.8 * len(space)), replace=False))
        scores.append(adjusted_rand_score(reference[rows], _fit_labels(method, space[rows], k, seed + r + 1)))
    return float(np.mean(scores))


def _variant_rows(comparison, variant, production, space, labels, reference, extreme, k, seed, method="kmeans"):
    rows = []
    for population, keep in (("all", np.ones(len(space), bool)), ("without_extremes", ~extreme)):
        if keep.sum() < 2 * k:
            continue
        metrics = _internal_metrics(space[keep], labels[keep], seed)
        metrics["ari_vs_production"] = float(adjusted_rand_score(reference[keep], labels[keep]))
        metrics["smallest_segment_share"] = float(np.bincount(pd.factorize(labels[keep])[0]).min() / keep.sum())
        metrics["segments_found"] = float(len(np.unique(labels[keep])))
        if population == "all":
            metrics["stability_ari"] = _subsample_stability(method, space, labels, k, seed)
        for name, value in metrics.items():
            rows.append(
                {
                    "comparison": comparison, "variant": variant, "is_production": production,
                    "population": population, "metric_name": name, "metric_value": value,
                }
            )
    return rows


def _preprocessed_space(frame, specs, settings, *, log1p=True, clip=True, scaler="standard", pca=True):
    """One of the preprocessing variants the outlier comparison puts side by side."""
    specs = [FeatureSpec(s.name, s.log1p and log1p, s.impute, s.label) for s in specs]
    low, high = (settings.clip_low_quantile, settings.clip_high_quantile) if clip else (0.0, 1.0)
    steps = [
        ("preprocess", HeavyTailPreprocessor(specs, low, high)),
        ("scale", StandardScaler() if scaler == "standard" else RobustScaler(quantile_range=(10, 90))),
    ]
    if pca:
        steps.append(("pca", PCA(settings.pca_variance, svd_solver="full", random_state=settings.random_state)))
    values = frame[[s.name for s in specs]].to_numpy(float)
    return np.nan_to_num(Pipeline(steps).fit_transform(values))


@single_threaded
def method_comparison(params: pd.DataFrame, analysed_versions: Iterable[int], study: StudyInputs) -> pd.DataFrame:
    """Alternatives to the production choices, on the same shoppers, with the same k."""
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return _empty(COMPARISON_COLUMNS)
    settings, seed, k = stored.settings, stored.settings.random_state, len(stored.segment_ids)
    sample = seeded_sample(_study_sample(stored, study), ANALYSIS.sample_size, seed)
    production = stored.predict(sample)
    extreme = extreme_users(stored, sample)
    space = stored.project(sample)
    specs = model_specs(stored, study.feature_config)
    rows: list[dict] = []

    # Algorithms, in the production space (same preprocessing and PCA), same k.
    rows += _variant_rows("algorithm", "kmeans", True, space, production, production, extreme, k, seed)
    for method in ("minibatch_kmeans", "gaussian_mixture"):
        labels = _fit_labels(method, space, k, seed)
        rows += _variant_rows("algorithm", method, False, space, labels, production, extreme, k, seed, method)
    rng = np.random.default_rng(seed)
    small = np.sort(rng.choice(len(space), min(len(space), ANALYSIS.agglomerative_sample_size), replace=False))
    labels = _fit_labels("agglomerative_ward", space[small], k, seed)
    rows += _variant_rows("algorithm", "agglomerative_ward", False, space[small], labels, production[small],
                          extreme[small], k, seed, "agglomerative_ward")

    # Feature sets: the configured one, every candidate, the correlation-pruned configured one.
    candidates = [s for s in feature_specs(study.feature_config.assign(in_model="true")) if s.name in sample.columns]
    matrix = candidate_matrix(sample, study.feature_config, settings)
    correlation = matrix.corr(method="spearman").fillna(0.0)
    separation = eta_squared(matrix, production)
    order = sorted(stored.features, key=lambda f: -separation.get(f, 0.0))
    verdict = correlation_pruning(correlation, order, ANALYSIS.redundancy_threshold)
    pruned = [s for s in specs if verdict.get(s.name) is None]
    for variant, chosen in (("configured", specs), ("all_candidates", candidates), ("correlation_pruned", pruned)):
        if variant == "configured":
            rows += _variant_rows("feature_set", variant, True, space, production, production, extreme, k, seed)
            continue
        variant_space = _preprocessed_space(sample, chosen, settings)
        labels = _fit_labels("kmeans", variant_space, k, seed)
        rows += _variant_rows("feature_set", variant, False, variant_space, labels, production, extreme, k, seed)
    rows.append({"comparison": "feature_set", "variant": "correlation_pruned", "is_production": False,
                 "population": "all", "metric_name": "features", "metric_value": float(len(pruned))})
    rows.append({"comparison": "feature_set", "variant": "configured", "is_production": True,
                 "population": "all", "metric_name": "features", "metric_value": float(len(specs))})
    rows.append({"comparison": "feature_set", "variant": "all_candidates", "is_production": False,
                 "population": "all", "metric_name": "features", "metric_value": float(len(candidates))})

    # Outliers: the production preprocessing (log1p + winsorising + standard scaling) against weaker ones.
    variants = {
        "log_winsorise_standard": None,
        "raw_standard": dict(log1p=False, clip=False),
        "log_standard": dict(log1p=True, clip=False),
        "log_winsorise_robust": dict(log1p=True, clip=True, scaler="robust"),
    }
    for variant, options in variants.items():
        if options is None:
            rows += _variant_rows("outliers", variant, True, space, production, production, extreme, k, seed)
            continue
        variant_space = _preprocessed_space(sample, specs, settings, **options)
        labels = _fit_labels("kmeans", variant_space, k, seed)
        rows += _variant_rows("outliers", variant, False, variant_space, labels, production, extreme, k, seed)
    rows.append({"comparison": "outliers", "variant": "log_winsorise_standard", "is_production": True,
                 "population": "all", "metric_name": "extreme_users", "metric_value": float(extreme.sum())})

    for row in rows:
        row.update(model_version=stored.version, sample_users=len(sample), random_seed=seed)
    return _typed(rows, COMPARISON_COLUMNS)


# --------------------------------------------------------------------------------------------------
# Minimum-events threshold
# --------------------------------------------------------------------------------------------------

THRESHOLD_COLUMNS = {
    "model_version": "int64",
    "min_events": "int64",
    "users_evaluated": "int64",
    "segments_evaluated": "int64",
    "agreement": "float64",
    "agreement_macro": "float64",
    "agreement_lowest_segment": "float64",
    "shoppers_reaching": "float64",
    "reliable_share": "float64",
    "is_reliable": "bool",
    "is_recommended": "bool",
    "is_current_setting": "bool",
    "random_seed": "int64",
}


EVENT_KEY = ["user_id", "event_time", "event_type", "product_id", "user_session", "price"]


def subsample_events(events: pd.DataFrame, n: int, seed: int, draws: int = 1) -> pd.DataFrame:
    """`draws` independent sets of n events drawn at random (without replacement) from each
    shopper's history, times and sessions kept; draw r of shopper u is the pseudo-shopper
    u * draws + r (so one feature computation serves every draw). Deterministic: the events are
    put in a canonical order first, whatever order the warehouse returned them in."""
    ordered = events.sort_values([c for c in EVENT_KEY if c in events.columns], kind="stable", na_position="first")
    rng = np.random.default_rng(seed)
    parts = []
    for draw in range(draws):
        ranked = ordered.assign(_key=rng.random(len(ordered))).sort_values(["user_id", "_key"], kind="stable")
        ranked = ranked[ranked.groupby("user_id").cumcount() < n].drop(columns="_key")
        parts.append(ranked.assign(user_id=ranked["user_id"] * draws + draw))
    return pd.concat(parts).sort_values(["user_id", "event_time"], kind="stable").reset_index(drop=True)


def features_from_events(
    events: pd.DataFrame, marketing_days: set, night_hours: tuple[int, int], features: list[str]
) -> pd.DataFrame:
    """user_features recomputed from events (pandas reference, the same formulas as the SQL)."""
    frame = reference_features.user_features(events, marketing_days, night_hours)
    for feature in features:
        if feature not in frame.columns:
            frame[feature] = 0.0 if feature.startswith("share_") else np.nan
        elif feature.startswith("share_"):
            frame[feature] = frame[feature].fillna(0.0)
    return frame.sort_values("user_id").reset_index(drop=True)


@single_threaded
def threshold_curve(
    params: pd.DataFrame,
    analysed_versions: Iterable[int],
    study: StudyInputs,
    fetch_events: Callable[[np.ndarray], pd.DataFrame],
    marketing_calendar: pd.DataFrame,
    night_hours: tuple[int, int],
) -> pd.DataFrame:
    """Agreement between a shopper's segment from n of their events and from their whole history.

    `fetch_events(ids)` returns the clean
    events (stg_events columns) of those shoppers. Shoppers with at least 2n events are evaluated
    at n (so the subsample is at most half of the history); the reference is the segment of their
    whole history, computed the same way. A threshold trades reliability (agreement grows with n)
    against coverage (fewer shoppers reach n): the recommended threshold maximises
    `reliable_share` = share of all shoppers reaching n x agreement at n, the expected share of
    shoppers who get a segment they keep, among the reliable n (agreement >= reliable_agreement);
    when no n is reliable, none is recommended: the curve says no number of events gives a
    reliable assignment. `agreement_macro` (each segment counts the same) and
    `agreement_lowest_segment` show which segments need more history.
    """
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return _empty(THRESHOLD_COLUMNS)
    seed = stored.settings.random_state
    counts = study.event_counts()[["user_id", "events"]]
    grid = [n for n in ANALYSIS.threshold_grid]
    pool = counts[counts["events"] >= 2 * grid[0]].sort_values("user_id")
    chosen = seeded_sample(pool, ANALYSIS.threshold_users, seed)
    events = fetch_events(chosen["user_id"].to_numpy())
    events = events.assign(event_time=pd.to_datetime(events["event_time"]))
    events = events.sort_values([c for c in EVENT_KEY if c in events.columns], kind="stable").reset_index(drop=True)
    marketing_days = set(pd.to_datetime(marketing_calendar["calendar_date"]).dt.date)
    full = features_from_events(events, marketing_days, night_hours, stored.features)
    reference = pd.Series(stored.predict(full), index=full["user_id"].to_numpy())
    history = events.groupby("user_id").size()

    rows = []
    for n in grid:
        users = history.index[history >= 2 * n]
        if len(users) == 0:
            continue
        draws = ANALYSIS.threshold_draws
        part = subsample_events(events[events["user_id"].isin(users)], n, seed + n, draws)
        sub = features_from_events(part, marketing_days, night_hours, stored.features)
        owner = sub["user_id"].to_numpy() // draws
        same = pd.Series(stored.predict(sub) == reference.loc[owner].to_numpy(), index=owner)
        same = same.groupby(level=0).mean()  # each shopper counts once: the share of their draws that agree
        by_segment = same.groupby(reference.loc[same.index].to_numpy()).agg(["mean", "size"])
        big = by_segment[by_segment["size"] >= ANALYSIS.min_segment_users]
        rows.append(
            {
                "min_events": n,
                "users_evaluated": len(same),
                "segments_evaluated": len(big),
                "agreement": float(same.mean()),
                "agreement_macro": float(big["mean"].mean()) if len(big) else np.nan,
                "agreement_lowest_segment": float(big["mean"].min()) if len(big) else np.nan,
                "shoppers_reaching": float((counts["events"] >= n).mean()),
            }
        )
        rows[-1]["reliable_share"] = rows[-1]["shoppers_reaching"] * rows[-1]["agreement"]
        rows[-1]["is_reliable"] = rows[-1]["agreement"] >= ANALYSIS.reliable_agreement
    recommended = recommended_threshold(rows)
    for row in rows:
        row.update(
            model_version=stored.version,
            is_recommended=row["min_events"] == recommended,
            is_current_setting=row["min_events"] == stored.settings.min_events,
            random_seed=seed,
        )
    return _typed(rows, THRESHOLD_COLUMNS)


def recommended_threshold(rows: list[dict]) -> int | None:
    """Among the reliable n, the one with the highest reliable share (the smaller n on a tie at 3
    decimals); None when no n is reliable."""
    rows = [r for r in rows if r.get("is_reliable", True)]
    if not rows:
        return None
    best = max(round(r["reliable_share"], 3) for r in rows)
    return min(int(r["min_events"]) for r in rows if round(r["reliable_share"], 3) == best)


# --------------------------------------------------------------------------------------------------
# Supervised assignment: cross-validation and rules
# --------------------------------------------------------------------------------------------------

CV_COLUMNS = {
    "model_version": "int64",
    "classifier": "string",
    "fold": "int64",
    "accuracy": "float64",
    "macro_f1": "float64",
    "extreme_accuracy": "float64",
    "train_users": "int64",
    "test_users": "int64",
    "extreme_test_users": "int64",
    "hyperparameters": "string",
    "random_seed": "int64",
}

RULE_COLUMNS = {
    "model_version": "int64",
    "segment_id": "int64",
    "rule_number": "int64",
    "rule_text": "string",
    "conditions": "int64",
    "users": "int64",
    "precision": "float64",
    "coverage": "float64",
    "sample_users": "int64",
    "random_seed": "int64",
}


def classifiers(specs: list[FeatureSpec], settings: FitSettings, n_train: int) -> dict[str, tuple[Pipeline, str]]:
    """The assignment models, each with the preprocessing fitted inside the folds (no leakage).

    K-NN and SVM work on distances, so they get the model's outlier-robust preprocessing (log1p,
    winsorising, standard scaling). The tree only needs imputation: it is invariant to monotone
    transforms and its thresholds stay readable in the features' own units.
    """
    robust = lambda: HeavyTailPreprocessor(specs, settings.clip_low_quantile, settings.clip_high_quantile)  # noqa: E731
    plain = [FeatureSpec(s.name, False, s.impute, s.label) for s in specs]
    leaf = max(10, n_train // 100)
    neighbours = max(1, min(ANALYSIS.knn_neighbors, n_train))  # a tiny sample (a data head) has fewer shoppers
    seed = settings.random_state
    return {
        "knn": (
            Pipeline([("preprocess", robust()), ("scale", StandardScaler()),
                      ("model", KNeighborsClassifier(neighbours))]),
            f"k={neighbours} neighbours, uniform weights, on log1p + winsorised + standardised features",
        ),
        "decision_tree": (
            Pipeline([("preprocess", HeavyTailPreprocessor(plain, 0.0, 1.0)),
                      ("model", DecisionTreeClassifier(max_depth=ANALYSIS.tree_max_depth, min_samples_leaf=leaf,
                                                       random_state=seed))]),
            f"max_depth={ANALYSIS.tree_max_depth}, min_samples_leaf={leaf}, on imputed features in their own units",
        ),
        "svm": (
            Pipeline([("preprocess", robust()), ("scale", StandardScaler()),
                      ("model", SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed))]),
            "RBF kernel, C=1, gamma=scale, on log1p + winsorised + standardised features",
        ),
    }


def _cv_sample(stored: StoredModel, study: StudyInputs) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    sample = seeded_sample(_study_sample(stored, study), ANALYSIS.cv_sample_size, stored.settings.random_state + 1)
    return sample, stored.predict(sample), extreme_users(stored, sample)


def cv_strata(labels: np.ndarray, extreme: np.ndarray, folds: int) -> tuple[np.ndarray, int]:
    """Stratification keys segment x extreme flag, and the number of folds.

    A segment's extreme shoppers too few to reach every fold are stratified with the rest of their
    segment; the folds drop below `folds` only if a whole segment is that small (at least 2).
    """
    keys = pd.Series(labels).astype(str) + np.where(extreme, "/extreme", "")
    counts = keys.map(keys.value_counts())
    keys = keys.where(counts >= folds, pd.Series(labels).astype(str))
    smallest = int(keys.value_counts().min()) if len(keys) else 0
    return pd.factorize(keys)[0], max(2, min(folds, smallest))


@single_threaded
def classifier_cv(params: pd.DataFrame, analysed_versions: Iterable[int], study: StudyInputs) -> pd.DataFrame:
    """Stratified k-fold CV of K-NN, decision tree and SVM learning the segments of the latest version.

    Folds are stratified on segment x extreme flag, so every fold gets its share of each segment
    and of the extreme shoppers (a fold holding most of them would swing the scores).
    """
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return _empty(CV_COLUMNS)
    seed = stored.settings.random_state
    sample, labels, extreme = _cv_sample(stored, study)
    specs = model_specs(stored, study.feature_config)
    X = sample[stored.features].to_numpy(float)
    strata, folds = cv_strata(labels, extreme, ANALYSIS.cv_folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rows = []
    for name in ("knn", "decision_tree", "svm"):
        for fold, (train, test) in enumerate(splitter.split(X, strata), start=1):
            model, description = classifiers(specs, stored.settings, len(train))[name]
            if len(np.unique(labels[train])) < 2:  # a tiny sample: SVM cannot fit one class; say so
                model, description = DummyClassifier(strategy="most_frequent"), "one segment in the fold: constant"
            predicted = model.fit(X[train], labels[train]).predict(X[test])
            ext = extreme[test]
            rows.append(
                {
                    "model_version": stored.version,
                    "classifier": name,
                    "fold": fold,
                    "accuracy": float(accuracy_score(labels[test], predicted)),
                    "macro_f1": float(f1_score(labels[test], predicted, average="macro")),
                    "extreme_accuracy": float(accuracy_score(labels[test][ext], predicted[ext])) if ext.any() else np.nan,
                    "train_users": len(train),
                    "test_users": len(test),
                    "extreme_test_users": int(ext.sum()),
                    "hyperparameters": description,
                    "random_seed": seed,
                }
            )
    return _typed(rows, CV_COLUMNS)


def _leaf_rules(tree: DecisionTreeClassifier, features: list[str]) -> dict[int, list[tuple[str, str, float]]]:
    """Leaf node -> list of (feature, '<=' or '>', threshold) on its path from the root."""
    t = tree.tree_
    paths: dict[int, list] = {}

    def walk(node: int, conditions: list) -> None:
        if t.children_left[node] == -1:
            paths[node] = conditions
            return
        feature, threshold = features[t.feature[node]], float(t.threshold[node])
        walk(t.children_left[node], conditions + [(feature, "<=", threshold)])
        walk(t.children_right[node], conditions + [(feature, ">", threshold)])

    walk(0, [])
    return paths


def rule_text(conditions: list[tuple[str, str, float]]) -> str:
    """Conditions merged per feature into readable bounds, e.g. "night_share > 0.31 and sessions <= 4"."""
    bounds: dict[str, list[float | None]] = {}
    for feature, op, threshold in conditions:
        low, high = bounds.setdefault(feature, [None, None])
        if op == ">":
            bounds[feature][0] = threshold if low is None else max(low, threshold)
        else:
            bounds[feature][1] = threshold if high is None else min(high, threshold)
    parts = []
    for feature, (low, high) in bounds.items():
        if low is not None and high is not None:
            parts.append(f"{low:.3g} < {feature} <= {high:.3g}")
        elif low is not None:
            parts.append(f"{feature} > {low:.3g}")
        else:
            parts.append(f"{feature} <= {high:.3g}")
    return " and ".join(parts) if parts else "all shoppers"


@single_threaded
def segment_rules(params: pd.DataFrame, analysed_versions: Iterable[int], study: StudyInputs) -> pd.DataFrame:
    """Each segment as the decision tree's leaves that predict it: readable rules with their precision.

    The tree (the one cross-validated in `classifier_cv`) is fitted on the whole CV sample; a leaf
    is a rule "conditions -> segment"; `precision` is the share of the leaf's shoppers who are in
    that segment and `coverage` the share of the segment's shoppers the rule catches.
    """
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return _empty(RULE_COLUMNS)
    seed = stored.settings.random_state
    sample, labels, _ = _cv_sample(stored, study)
    specs = model_specs(stored, study.feature_config)
    pipeline, _ = classifiers(specs, stored.settings, len(sample))["decision_tree"]
    X = sample[stored.features].to_numpy(float)
    pipeline.fit(X, labels)
    tree: DecisionTreeClassifier = pipeline.named_steps["model"]
    leaves = tree.apply(pipeline.named_steps["preprocess"].transform(X))
    paths = _leaf_rules(tree, stored.features)
    segment_sizes = pd.Series(labels).value_counts()

    rows = []
    for leaf, conditions in paths.items():
        members = leaves == leaf
        if not members.any():
            continue
        predicted = tree.classes_[int(np.argmax(tree.tree_.value[leaf][0]))]
        hits = int((labels[members] == predicted).sum())
        rows.append(
            {
                "segment_id": int(predicted),
                "rule_text": rule_text(conditions),
                "conditions": len(conditions),
                "users": int(members.sum()),
                "precision": hits / int(members.sum()),
                "coverage": hits / int(segment_sizes[predicted]),
            }
        )
    frame = pd.DataFrame(rows).sort_values(["segment_id", "coverage", "precision"], ascending=[True, False, False])
    frame["rule_number"] = frame.groupby("segment_id").cumcount() + 1
    frame["model_version"] = stored.version
    frame["sample_users"] = len(sample)
    frame["random_seed"] = seed
    return frame[list(RULE_COLUMNS)].astype(RULE_COLUMNS).reset_index(drop=True)
