"""Fit the segmentation model and describe it as one tidy table of parameters.

Pipeline: heavy-tail preprocessing (impute, log1p, clip to training quantiles) -> StandardScaler
-> PCA (enough components for `pca_variance` of the variance) -> KMeans, with k chosen over a
range (`model_selection`). On a retraining, segments are matched to the previous version's so a
segment keeps its id and name (`identity`); names, portraits and actions follow the centroids
(`naming`).

The same code serves the dbt Python model `segment_model` (DuckDB) and `segments fit`
(warehouses without Python models): only reading and writing differ. The warehouse applies the
parameters in plain SQL (`models/segments/user_segments.sql`), so every parameter that
`predict` uses is written out, and `StoredModel` reads them back to predict exactly as the SQL does.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from . import drift

def single_threaded(function):
    """Run scikit-learn / BLAS single-threaded inside `function`.

    The fits run on bounded samples (thousands of rows), where threads buy little; and on a shared
    machine (or inside a busy `dbt build`) OpenMP threads spin-waiting for descheduled siblings
    made KMeans about 20 times slower than one thread (measured: 160 ms against 9 ms per run).
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1):
            return function(*args, **kwargs)

    return wrapper


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
PARAM_GROUPS = ("config", "preprocess", "pca", "pca_selection", "kmeans", "segment", "trait", "lineage", "metric",
                "structure", "drift")


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

    n_segments: int = 0  # 0 = choose k in [k_min, k_max] (model_selection.choose_k)
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
    min_stability: float = 0.85  # a k is "stable" when its mean bootstrap ARI reaches this
    silhouette_tolerance: float = 0.02  # silhouettes closer than this are a tie (see model_selection)
    stability_tolerance: float = 0.02  # stabilities closer than this are a tie (see model_selection)
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


def retrain_requested(meta: Mapping[str, Any] | None) -> bool:
    """The `retrain` var, as segment_model's config carries it (`meta.retrain`)."""
    return str((meta or {}).get("retrain", False)).strip().lower() == "true"


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


# --------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------


@dataclass
class FittedModel:
    pipeline: Pipeline  # preprocess -> scale -> pca -> kmeans
    specs: list[FeatureSpec]
    settings: FitSettings
    segment_of_label: np.ndarray  # KMeans label -> segment id (stable across versions)
    segments: pd.DataFrame  # one row per segment id: names, persona, training size, lineage
    metrics: list[tuple[str, int | None, int | None, float]]  # (metric, segment_id, component, value)
    eligible_users: int
    training_users: int
    k_choice: "object" = None  # model_selection.KChoice
    pca_curve: pd.DataFrame | None = None  # component, explained_variance_ratio, cumulative, kept
    traits: pd.DataFrame | None = None  # segment_id, feature_name, centroid_z, ...
    lineage: dict = field(default_factory=dict)  # agreement with the previous version
    max_segment_id: int = 0
    structure: "object" = None  # structure.StructureVerdict: is there structure to segment?

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    @property
    def n_segments(self) -> int:
        return len(self.segment_of_label)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Segment id of each row, exactly as the SQL scoring computes it."""
        return self.segment_of_label[self.pipeline.predict(frame[self.feature_names].to_numpy(dtype=float))]


@single_threaded
def fit_model(
    training: pd.DataFrame,
    feature_config: pd.DataFrame,
    personas: pd.DataFrame,
    traits: pd.DataFrame,
    settings: FitSettings,
    eligible_users: int,
    previous: StoredModel | None = None,
) -> FittedModel:
    """Fit on `training` (user_features rows, sorted by user_id), choose k, keep ids, name segments."""
    from . import identity, model_selection, naming, structure

    specs = feature_specs(feature_config)
    shortfall = too_few_to_fit(len(training), settings)
    if shortfall:
        raise ValueError(f"too few shoppers to fit: {shortfall}")
    values = training[[spec.name for spec in specs]].to_numpy(dtype=float)
    preprocessing = build_preprocessing(specs, settings)
    projected = preprocessing.fit_transform(values)

    previous_k = len(previous.segment_ids) if previous is not None else None
    if settings.n_segments:
        choice = model_selection.KChoice(settings.n_segments, "fixed by the n_segments var", None)
    else:
        scan = model_selection.scan_k(projected, settings)
        choice = model_selection.choose_k(scan, settings, previous_k)
    clusterer = kmeans(choice.k, settings).fit(projected)
    pipeline = Pipeline([*preprocessing.steps, ("kmeans", clusterer)])
    labels = clusterer.labels_
    verdict = structure.structure_verdict(projected, choice.k, settings.random_state)

    space = naming.SegmentSpace.of(pipeline, specs)
    matches = identity.match_previous(space, previous, settings.max_match_distance)
    segment_of_label, max_segment_id = identity.assign_ids(np.bincount(labels, minlength=choice.k), matches, previous)
    segment_ids = segment_of_label[labels]

    profiles = naming.centroid_profiles(space, segment_of_label)
    kept = identity.kept_personas(matches, segment_of_label, previous)
    segments = naming.name_segments(profiles, personas, traits, kept, settings.min_persona_score, verdict.verdict)
    segments["training_users"] = [int((segment_ids == s).sum()) for s in segments["segment_id"]]
    segments = identity.add_lineage(segments, matches, segment_of_label)

    model = FittedModel(
        pipeline, specs, settings, segment_of_label, segments, [], eligible_users, len(training),
        k_choice=choice, pca_curve=model_selection.pca_curve(pipeline, values), traits=profiles,
        max_segment_id=max_segment_id, structure=verdict,
    )
    if previous is not None:
        model.lineage = identity.retrain_agreement(previous, training, segment_ids)
    model.metrics = fit_metrics(model, values, segment_ids)
    return model


def fit_metrics(model: FittedModel, values: np.ndarray, segment_ids: np.ndarray) -> list:
    """Quality of the fit, computed in the PCA space the segments live in."""
    pipeline, settings = model.pipeline, model.settings
    projected = pipeline[:-1].transform(values)
    pca: PCA = pipeline.named_steps["pca"]
    metrics: list[tuple[str, int | None, int | None, float]] = []
    for component, ratio in enumerate(pca.explained_variance_ratio_, start=1):
        metrics.append(("explained_variance_ratio", None, component, float(ratio)))
    metrics.append(("explained_variance_total", None, None, float(pca.explained_variance_ratio_.sum())))
    metrics.append(("pca_components", None, None, float(pca.n_components_)))
    metrics.append(("n_segments", None, None, float(model.n_segments)))
    metrics.append(("inertia", None, None, float(pipeline.named_steps["kmeans"].inertia_)))
    if len(np.unique(segment_ids)) > 1:
        sample = min(settings.silhouette_sample, len(values))
        metrics.append(
            ("silhouette", None, None,
             float(silhouette_score(projected, segment_ids, sample_size=sample, random_state=settings.random_state)))
        )
        metrics.append(("davies_bouldin", None, None, float(davies_bouldin_score(projected, segment_ids))))
        metrics.append(("calinski_harabasz", None, None, float(calinski_harabasz_score(projected, segment_ids))))
    for segment_id in sorted(model.segment_of_label):
        size = int((segment_ids == segment_id).sum())
        metrics.append(("segment_size", int(segment_id), None, float(size)))
        metrics.append(("segment_share", int(segment_id), None, size / len(segment_ids)))
    metrics.append(("training_users", None, None, float(model.training_users)))
    metrics.append(("eligible_users", None, None, float(model.eligible_users)))
    return metrics


def training_fingerprint(training: pd.DataFrame, feature_config: pd.DataFrame, settings: FitSettings) -> str:
    """Identifies a fit's inputs: refitting on identical inputs does not create a new version."""
    digest = hashlib.sha256()
    digest.update(repr(sorted(asdict(settings).items())).encode())
    digest.update(pd.util.hash_pandas_object(feature_config.astype(str), index=False).to_numpy().tobytes())
    columns = ["user_id", *[spec.name for spec in feature_specs(feature_config)]]
    digest.update(pd.util.hash_pandas_object(training[columns], index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def to_params(model: FittedModel, model_version: int, fingerprint: str, trained_at: datetime) -> pd.DataFrame:
    """Everything the SQL scoring and the reports need, as tidy rows."""
    rows: list[dict] = []

    def add(group, name, *, feature=None, component=None, segment=None, value=None, text=None):
        rows.append(
            {
                "param_group": group,
                "param_name": name,
                "feature_name": feature,
                "component": component,
                "segment_id": segment,
                "value": value,
                "text_value": text,
            }
        )

    for name, setting in asdict(model.settings).items():
        add("config", name, value=float(setting))
    add("config", "fingerprint", text=fingerprint)
    add("config", "max_segment_id", value=float(model.max_segment_id))
    add("config", "k_selection_reason", value=float(model.n_segments), text=model.k_choice.reason)

    preprocess: HeavyTailPreprocessor = model.pipeline.named_steps["preprocess"]
    scale: StandardScaler = model.pipeline.named_steps["scale"]
    pca: PCA = model.pipeline.named_steps["pca"]
    for i, spec in enumerate(model.specs):
        add("preprocess", "position", feature=spec.name, value=float(i + 1))
        add("preprocess", "log1p", feature=spec.name, value=1.0 if spec.log1p else 0.0)
        add("preprocess", "impute_value", feature=spec.name, value=float(preprocess.impute_values_[i]))
        add("preprocess", "clip_low", feature=spec.name, value=float(preprocess.clip_low_[i]))
        add("preprocess", "clip_high", feature=spec.name, value=float(preprocess.clip_high_[i]))
        add("preprocess", "center", feature=spec.name, value=float(scale.mean_[i]))
        add("preprocess", "scale", feature=spec.name, value=float(scale.scale_[i]))
        add("pca", "mean", feature=spec.name, value=float(pca.mean_[i]))
        for component in range(pca.n_components_):
            add("pca", "loading", feature=spec.name, component=component + 1, value=float(pca.components_[component, i]))

    for row in model.pca_curve.itertuples(index=False):
        for name in ("explained_variance_ratio", "cumulative_explained_variance", "kept"):
            add("pca_selection", name, component=int(row.component), value=float(getattr(row, name)))

    centers = model.pipeline.named_steps["kmeans"].cluster_centers_
    for label, segment_id in enumerate(model.segment_of_label):
        for component in range(centers.shape[1]):
            add("kmeans", "centroid", component=component + 1, segment=int(segment_id), value=float(centers[label, component]))

    for segment in model.segments.itertuples(index=False):
        for name in ("persona_key", "segment_name", "description", "marketing_action", "distinctive_traits"):
            add("segment", name, segment=int(segment.segment_id), text=str(getattr(segment, name)))
        add("segment", "persona_score", segment=int(segment.segment_id), value=float(segment.persona_score))
        add("lineage", "previous_segment_id", segment=int(segment.segment_id),
            value=None if pd.isna(segment.previous_segment_id) else float(segment.previous_segment_id))
        add("lineage", "match_distance", segment=int(segment.segment_id),
            value=None if pd.isna(segment.match_distance) else float(segment.match_distance))

    for trait in model.traits.itertuples(index=False):
        for name in ("centroid_z", "centroid_value", "population_value", "distinctive_rank"):
            value = getattr(trait, name)
            add("trait", name, feature=trait.feature_name, segment=int(trait.segment_id),
                value=None if pd.isna(value) else float(value))

    for name, value in model.lineage.items():
        add("lineage", name, value=float(value))

    for metric, segment_id, component, value in model.metrics:
        add("metric", metric, segment=segment_id, component=component, value=value)

    if model.structure is not None:  # the verdict on structure (structure.py), its rule and its figures
        add("structure", "verdict", value=model.structure.observed_silhouette - model.structure.null_silhouette,
            text=model.structure.verdict)
        add("structure", "rule", text=model.structure.rule)
        for name, value in model.structure.metrics().items():
            add("metric", name, value=value)

    frame = pd.DataFrame.from_records(rows)
    frame.insert(0, "model_version", model_version)
    frame["trained_at"] = trained_at
    return frame[list(PARAM_COLUMNS)].astype(PARAM_COLUMNS)


def empty_params() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in PARAM_COLUMNS.items()})


@dataclass
class TrainingInputs:
    """What a fit reads from the warehouse; the callers (dbt model, `segments fit`) provide it."""

    eligible_user_ids: np.ndarray
    fetch_features: Callable[[np.ndarray], pd.DataFrame]  # user_features rows of these ids, sorted by user_id
    feature_config: pd.DataFrame
    personas: pd.DataFrame
    traits: pd.DataFrame


def train_new_version(
    inputs: TrainingInputs,
    settings: FitSettings,
    latest_version: int | None,
    latest_fingerprint: str | None,
    previous_params: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, FittedModel | None]:
    """Fit a model version and return its parameter rows (empty when the inputs are unchanged).

    `previous_params` (the parameter rows of the current version) lets the new version keep the
    ids and names of the segments it shares with it; without them ids are ordered by size.
    """
    chosen = choose_training_users(inputs.eligible_user_ids, settings)
    training = inputs.fetch_features(chosen)
    fingerprint = training_fingerprint(training, inputs.feature_config, settings)
    if fingerprint == latest_fingerprint:
        return empty_params(), None
    previous = StoredModel.from_params(previous_params) if previous_params is not None else None
    model = fit_model(
        training, inputs.feature_config, inputs.personas, inputs.traits, settings,
        len(inputs.eligible_user_ids), previous,
    )
    trained_at = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    params = to_params(model, (latest_version or 0) + 1, fingerprint, trained_at)
    return with_rows(params, drift.training_bin_rows(training, model.feature_names)), model


def with_rows(params: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """`params` plus more parameter rows of the same version (e.g. drift's training bins)."""
    extra = pd.DataFrame.from_records(rows, columns=[c for c in PARAM_COLUMNS if c not in ("model_version", "trained_at")])
    extra.insert(0, "model_version", params.model_version.iloc[0])
    extra["trained_at"] = params.trained_at.iloc[0]
    return pd.concat([params, extra[list(PARAM_COLUMNS)].astype(PARAM_COLUMNS)], ignore_index=True)


def training_sample(inputs: TrainingInputs, settings: FitSettings) -> pd.DataFrame:
    """The training shoppers of a fit with these settings (what the post-fit analyses study)."""
    return inputs.fetch_features(choose_training_users(inputs.eligible_user_ids, settings))


def agreement(left: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(adjusted Rand index, share of identical labels) of two labelings of the same shoppers."""
    if len(left) == 0:
        return float("nan"), float("nan")
    return float(adjusted_rand_score(left, right)), float(np.mean(np.asarray(left) == np.asarray(right)))
