"""Post-fit analysis `method_comparison` (see `analyses`): KMeans against other algorithms, the
configured feature set against other sets, the outlier handling against weaker preprocessing, each
measured on all shoppers and without the extreme ones.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.cluster import AgglomerativeClustering, KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler

from ..params import FeatureSpec, HeavyTailPreprocessor, feature_specs, single_threaded
from .k_and_features import candidate_matrix, correlation_pruning, eta_squared
from .study import (
    ANALYSIS,
    StudyInputs,
    empty_frame,
    extreme_users,
    internal_metrics,
    model_specs,
    pending_model,
    seeded_sample,
    study_sample,
    typed_frame,
)


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
        metrics = internal_metrics(space[keep], labels[keep], seed)
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
        return empty_frame(COMPARISON_COLUMNS)
    settings, seed, k = stored.settings, stored.settings.random_state, len(stored.segment_ids)
    sample = seeded_sample(study_sample(stored, study), ANALYSIS.sample_size, seed)
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
    return typed_frame(rows, COMPARISON_COLUMNS)


