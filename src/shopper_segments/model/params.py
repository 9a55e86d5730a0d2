"""The model's building blocks: its settings, its parameter table and the stored model read back from it.

Pipeline: heavy-tail preprocessing (impute, log1p, clip to training quantiles) -> StandardScaler
-> PCA (enough components for `pca_variance` of the variance) -> KMeans. This module holds what
every step of the model shares — `FitSettings`, `FeatureSpec`, the tidy parameter table
(`PARAM_COLUMNS`), the preprocessing (`build_preprocessing`), the training sample and `StoredModel` —
and imports nothing else of the package, so `selection`, `identity` and `training` all build on it
without an import circle; the fit itself is in `training`.

The warehouse applies the parameters in plain SQL (`models/segments/user_segments.sql`), so every
parameter that `predict` uses is written out, and `StoredModel` reads them back to predict exactly
as the SQL does.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import ThreadpoolController


def single_threaded(function):
    """Run scikit-learn / BLAS single-threaded inside `function`.

    The fits run on bounded samples (thousands of rows), where threads buy little; and on a shared
    machine (or inside a busy `dbt build`) OpenMP threads spin-waiting for descheduled siblings
    made KMeans about 20 times slower than one thread (measured: 160 ms against 9 ms per run).
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with _threadpools().limit(limits=1):
            return function(*args, **kwargs)

    return wrapper


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The thread pools of the process, found once: `threadpool_limits` searches every loaded library
    again on each call (about 0.1 s inside dbt, which has loaded many). The libraries that matter
    (BLAS, OpenMP) are loaded when scikit-learn is imported, before the first call."""
    return ThreadpoolController()


# Columns of the tidy parameter table, in order, with their pandas dtypes.
PARAM_COLUMNS = {
    "model_version": "int64",
    "param_group": "string",
    "param_name": "string",
    "feature_name": "string",
    "component": "Int64",
    "segment_id": "Int64",
    "value": "float64",
    "text_value": "string",
    "trained_at": "datetime64[us]",
}
PARAM_GROUPS = ("config", "preprocess", "pca", "pca_selection", "k_scan", "kmeans", "segment", "trait", "lineage",
                "metric", "structure", "drift")


@dataclass(frozen=True)
class FeatureSpec:
    """How one user_features column enters the model."""

    name: str
    log1p: bool  # heavy-tailed counts and amounts are compressed with log(1 + x)
    impute: str  # value for a missing (undefined) feature: a number, or "median" of the training sample
    label: str = ""  # words for portraits, e.g. "night-time activity"


@dataclass(frozen=True)
class FitSettings:
    """Every knob of a fit; all are written to the parameter table (group `config`)."""

    n_segments: int = 0  # 0 = choose k in [k_min, k_max] (selection.choose_k)
    k_min: int = 2
    k_max: int = 12
    min_events: int = 8
    sample_size: int = 200_000
    pca_variance: float = 0.85
    random_state: int = 42
    clip_low_quantile: float = 0.01
    clip_high_quantile: float = 0.99
    silhouette_sample: int = 10_000
    kmeans_n_init: int = 10
    scan_sample_size: int = 5_000  # shoppers the k scan uses (a seeded sample of the training sample)
    scan_bootstraps: int = 10  # resamples per k for the stability (adjusted Rand index) of the scan
    scan_null_draws: int = 3  # permuted copies per k for the scan's null silhouette (see selection)
    min_stability: float = 0.85  # a k is "stable" when its mean bootstrap ARI reaches this
    excess_tolerance: float = 0.02  # silhouette excesses closer than this are a tie (see selection)
    stability_tolerance: float = 0.02  # stabilities closer than this are a tie (see selection)
    max_match_distance: float = 0.5  # RMS distance (training SDs) under which a segment keeps its previous id
    min_persona_score: float = 0.5  # below this a segment gets no persona but a name from its traits

    @classmethod
    def from_model_meta(cls, meta: Mapping[str, Any] | None) -> "FitSettings":
        """Settings from `meta.fit_settings` of segment_model's config (python_models/_python_models.yml).

        dbt hands a Python model only the config keys its code names literally, so the vars travel
        in one `meta` mapping: the dbt model reads `dbt.config.get("meta")`, `segments fit` renders the
        same YAML. A missing mapping is an error, never a silent fall-back to the defaults.
        """
        values = (meta or {}).get("fit_settings")
        if not isinstance(values, Mapping):
            raise ValueError("segment_model's config has no meta.fit_settings (python_models/_python_models.yml)")
        unknown = sorted(set(values) - set(asdict(cls())))
        if unknown:
            raise ValueError(f"unknown fit settings in meta.fit_settings: {unknown}")
        return cls.from_config(lambda name, default: values.get(name, default))

    @classmethod
    def from_config(cls, get: Callable[[str, object], object]) -> "FitSettings":
        """Settings from a name -> value lookup (a model's meta.fit_settings, or stored config rows)."""
        defaults = cls()
        values = {}
        for name, default in asdict(defaults).items():
            raw = get(name, None)
            if name == "n_segments" and str(raw).strip().lower() == "auto":
                raw = 0
            values[name] = default if raw is None or raw == "" else type(default)(float(raw))
        return cls(**values)


def minimum_training_users(settings: FitSettings) -> int:
    """Shoppers a fit needs at least: two per segment of the smallest k it may choose."""
    return max(settings.n_segments or settings.k_min, 2) * 2


def too_few_to_fit(eligible_users: int, settings: FitSettings) -> str | None:
    """Why no model can be fitted on `eligible_users` shoppers (one line for the run's output), or None."""
    needed = minimum_training_users(settings)
    if min(eligible_users, settings.sample_size) >= needed:
        return None
    smallest = settings.n_segments or settings.k_min
    return (
        f"{eligible_users:,} shopper{'s have' if eligible_users != 1 else ' has'} at least {settings.min_events} "
        f"events (min_events); fitting {smallest} segments needs at least {needed}"
        + (f" (fit_sample_size is {settings.sample_size})" if settings.sample_size < needed <= eligible_users else "")
    )


def no_fit_message(eligible_users: int, settings: FitSettings, current_version: int | None) -> str | None:
    """The run's one line when too few shoppers are eligible to fit (and what stays in force), or None."""
    shortfall = too_few_to_fit(eligible_users, settings)
    if not shortfall:
        return None
    kept = (f"model version {current_version} stays current" if current_version
            else "no model fitted, every shopper stays not_enough_history")
    return f"segment_model: {shortfall}: {kept}; lower min_events or land more events."


def current_version(previous: pd.DataFrame | None) -> tuple[int | None, str | None, pd.DataFrame | None]:
    """(version, training fingerprint, parameter rows) of the current model version, read from its
    rows in segment_model; (None, None, None) when no version is fitted yet."""
    if previous is None or not len(previous):
        return None, None, None
    fingerprint = previous[(previous.param_group == "config") & (previous.param_name == "fingerprint")]
    if not len(fingerprint):
        return None, None, previous
    return int(fingerprint.model_version.iloc[0]), fingerprint.text_value.iloc[0], previous


def feature_specs(feature_config: pd.DataFrame) -> list[FeatureSpec]:
    """The model's features from the seed segment_features (rows with in_model = true)."""
    used = feature_config[feature_config["in_model"].astype(str).str.lower() == "true"]
    labels = used["label"] if "label" in used.columns else pd.Series("", index=used.index)
    return [
        FeatureSpec(row.feature_name, str(row.transform) == "log1p", str(row.impute), str(label or row.feature_name))
        for row, label in zip(used.itertuples(index=False), labels.fillna(""))
    ]


def column_medians(values: np.ndarray) -> np.ndarray:
    """Median of each column over its defined values; NaN for a column with none.

    A feature can be undefined for every training shopper (no priced purchase in a small sample,
    say): numpy's nanmedian would then warn "All-NaN slice", which says nothing a user can act on.
    """
    medians = np.full(values.shape[1] if values.ndim == 2 else 0, np.nan)
    defined = ~np.isnan(values).all(axis=0) if len(values) else np.zeros(len(medians), dtype=bool)
    if defined.any():
        medians[defined] = np.nanmedian(values[:, defined], axis=0)
    return medians


class HeavyTailPreprocessor(BaseEstimator, TransformerMixin):
    """Impute, log1p and clip each feature to its training quantiles.

    A handful of extreme shoppers (bots, resellers) would otherwise dominate the scaling, the
    principal components and the centroids; clipping bounds their pull while keeping them in a segment.
    """

    def __init__(self, specs: list[FeatureSpec], low_quantile: float = 0.01, high_quantile: float = 0.99):
        self.specs = specs
        self.low_quantile = low_quantile
        self.high_quantile = high_quantile

    def _impute_and_log(self, values: np.ndarray) -> np.ndarray:
        values = np.where(np.isnan(values), self.impute_values_, values)
        logged = np.log1p(np.maximum(values, 0.0))
        return np.where(self.log1p_mask_, logged, values)

    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)
        self.log1p_mask_ = np.array([spec.log1p for spec in self.specs])
        medians = column_medians(values)
        self.impute_values_ = np.array(
            [
                np.nan_to_num(medians[i]) if spec.impute == "median" else float(spec.impute)
                for i, spec in enumerate(self.specs)
            ]
        )
        transformed = self._impute_and_log(values)
        self.clip_low_ = np.quantile(transformed, self.low_quantile, axis=0)
        self.clip_high_ = np.quantile(transformed, self.high_quantile, axis=0)
        return self

    def transform(self, X):
        return np.clip(self._impute_and_log(np.asarray(X, dtype=float)), self.clip_low_, self.clip_high_)


def build_preprocessing(specs: list[FeatureSpec], settings: FitSettings) -> Pipeline:
    """Everything before the clustering: the space the segments live in."""
    return Pipeline(
        [
            ("preprocess", HeavyTailPreprocessor(specs, settings.clip_low_quantile, settings.clip_high_quantile)),
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=settings.pca_variance, svd_solver="full", random_state=settings.random_state)),
        ]
    )


def kmeans(n_clusters: int, settings: FitSettings, n_init: int | None = None, seed_offset: int = 0) -> KMeans:
    return KMeans(
        n_clusters=n_clusters,
        n_init=n_init or settings.kmeans_n_init,
        random_state=settings.random_state + seed_offset,
    )


def choose_training_users(eligible_user_ids: np.ndarray, settings: FitSettings) -> np.ndarray:
    """A deterministic sample of at most `sample_size` eligible shoppers (sorted ids).

    Depends only on the set of ids and the seed, so every warehouse picks the same shoppers.
    """
    ids = np.unique(np.asarray(eligible_user_ids, dtype=np.int64))
    if len(ids) <= settings.sample_size:
        return ids
    rng = np.random.default_rng(settings.random_state)
    return np.sort(rng.choice(ids, size=settings.sample_size, replace=False))


# --------------------------------------------------------------------------------------------------
# A stored model version, read back from the parameter table
# --------------------------------------------------------------------------------------------------


@dataclass
class StoredModel:
    """One model version as the warehouse holds it: predicts exactly as the SQL scoring does.

    Used to match a retrained model to its predecessor and by every post-fit analysis, so that
    they all describe the model that scores the shoppers, not a refit of it.
    """

    version: int
    settings: FitSettings
    features: list[str]
    log1p: np.ndarray
    impute: np.ndarray
    clip_low: np.ndarray
    clip_high: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    pca_mean: np.ndarray
    loadings: np.ndarray  # components x features
    segment_ids: np.ndarray  # sorted
    centroids: np.ndarray  # segments x components, rows in segment_ids order
    labels: pd.DataFrame  # one row per segment: segment_id, persona_key, segment_name, ...
    max_segment_id: int
    params: pd.DataFrame = field(repr=False)

    @classmethod
    def from_params(cls, params: pd.DataFrame, version: int | None = None) -> "StoredModel | None":
        """The given version (default: the latest) of a parameter table; None if it is empty."""
        if params is None or len(params) == 0:
            return None
        version = int(params["model_version"].max()) if version is None else int(version)
        p = params[params["model_version"] == version]
        config = p[p["param_group"] == "config"]
        numeric = dict(zip(config["param_name"], config["value"]))
        settings = FitSettings.from_config(lambda name, default: None if pd.isna(numeric.get(name)) else numeric.get(name))

        pre = p[p["param_group"] == "preprocess"].pivot_table(index="feature_name", columns="param_name", values="value")
        pre = pre.sort_values("position")
        features = list(pre.index)
        loading_rows = p[(p["param_group"] == "pca") & (p["param_name"] == "loading")]
        loadings = (
            loading_rows.pivot_table(index="component", columns="feature_name", values="value")
            .sort_index()
            .reindex(columns=features)
            .to_numpy()
        )
        pca_mean = (
            p[(p["param_group"] == "pca") & (p["param_name"] == "mean")].set_index("feature_name")["value"].reindex(features)
        )
        centroid_rows = p[(p["param_group"] == "kmeans") & (p["param_name"] == "centroid")]
        centroids = centroid_rows.pivot_table(index="segment_id", columns="component", values="value").sort_index()
        segment_rows = p[p["param_group"] == "segment"]
        labels = segment_rows.pivot_table(
            index="segment_id", columns="param_name", values="text_value", aggfunc="first"
        ).reset_index()
        max_id = numeric.get("max_segment_id")
        return cls(
            version=version,
            settings=settings,
            features=features,
            log1p=pre["log1p"].to_numpy() == 1.0,
            impute=pre["impute_value"].to_numpy(),
            clip_low=pre["clip_low"].to_numpy(),
            clip_high=pre["clip_high"].to_numpy(),
            center=pre["center"].to_numpy(),
            scale=pre["scale"].to_numpy(),
            pca_mean=pca_mean.to_numpy(),
            loadings=loadings,
            segment_ids=centroids.index.to_numpy(dtype=np.int64),
            centroids=centroids.to_numpy(),
            labels=labels,
            max_segment_id=int(max_id) if max_id is not None and not pd.isna(max_id) else int(centroids.index.max()),
            params=p,
        )

    def transformed(self, frame: pd.DataFrame) -> np.ndarray:
        """Impute, log1p and clip, as the SQL does: the features in the units the model clips them."""
        values = frame[self.features].to_numpy(dtype=float)
        values = np.where(np.isnan(values), self.impute, values)
        values = np.where(self.log1p, np.log1p(np.maximum(values, 0.0)), values)
        return np.clip(values, self.clip_low, self.clip_high)

    def standardised(self, frame: pd.DataFrame) -> np.ndarray:
        return (self.transformed(frame) - self.center) / self.scale

    def project(self, frame: pd.DataFrame) -> np.ndarray:
        return (self.standardised(frame) - self.pca_mean) @ self.loadings.T

    def squared_distances(self, frame: pd.DataFrame) -> np.ndarray:
        projected = self.project(frame)
        return ((projected[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Segment id of each row: the first segment (in id order) at the smallest distance, as the SQL."""
        return self.segment_ids[np.argmin(self.squared_distances(frame), axis=1)]

    def feature_centroids(self) -> np.ndarray:
        """Centroids back in the transformed feature units (after log1p and clipping, before scaling)."""
        return (self.centroids @ self.loadings + self.pca_mean) * self.scale + self.center

    def segment_names(self) -> dict[int, str]:
        return dict(zip(self.labels["segment_id"].astype(int), self.labels["segment_name"]))


def stored_versions(params: pd.DataFrame) -> list[int]:
    return sorted(int(v) for v in pd.unique(params["model_version"])) if len(params) else []


def empty_params() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in PARAM_COLUMNS.items()})


def agreement(left: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(adjusted Rand index, share of identical labels) of two labelings of the same shoppers."""
    if len(left) == 0:
        return float("nan"), float("nan")
    return float(adjusted_rand_score(left, right)), float(np.mean(np.asarray(left) == np.asarray(right)))
