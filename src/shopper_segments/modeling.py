"""Fit the segmentation model and describe it as one tidy table of parameters.

Pipeline: heavy-tail preprocessing (impute, log1p, clip to training quantiles) -> StandardScaler
-> PCA (enough components for `pca_variance` of the variance) -> KMeans. Segments are named by
matching their behaviour to the personas of `seeds/segment_personas.csv`.

The same code serves the dbt Python model `segment_model` (DuckDB) and `segments fit`
(warehouses without Python models): only reading and writing differ. The warehouse applies the
parameters in plain SQL (`models/segments/user_segments.sql`), so every parameter that
`predict` uses is written out.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

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


@dataclass(frozen=True)
class FeatureSpec:
    """How one user_features column enters the model."""

    name: str
    log1p: bool  # heavy-tailed counts and amounts are compressed with log(1 + x)
    impute: str  # value for a missing (undefined) feature: a number, or "median" of the training sample


@dataclass(frozen=True)
class FitSettings:
    n_segments: int = 6
    min_events: int = 5
    sample_size: int = 200_000
    pca_variance: float = 0.85
    random_state: int = 42
    clip_low_quantile: float = 0.01
    clip_high_quantile: float = 0.99
    silhouette_sample: int = 10_000
    kmeans_n_init: int = 10

    @classmethod
    def from_config(cls, get: Callable[[str, object], object]) -> "FitSettings":
        """Settings from dbt model configs (which carry the project's vars)."""
        defaults = cls()
        values = {}
        for name, default in asdict(defaults).items():
            raw = get(name, None)
            values[name] = default if raw is None or raw == "" else type(default)(raw)
        return cls(**values)


def feature_specs(feature_config: pd.DataFrame) -> list[FeatureSpec]:
    """The model's features from the seed segment_features (rows with in_model = true)."""
    used = feature_config[feature_config["in_model"].astype(str).str.lower() == "true"]
    return [
        FeatureSpec(row.feature_name, str(row.transform) == "log1p", str(row.impute))
        for row in used.itertuples(index=False)
    ]


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
        medians = np.nanmedian(values, axis=0) if len(values) else np.zeros(len(self.specs))
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


def build_pipeline(specs: list[FeatureSpec], settings: FitSettings) -> Pipeline:
    return Pipeline(
        [
            ("preprocess", HeavyTailPreprocessor(specs, settings.clip_low_quantile, settings.clip_high_quantile)),
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=settings.pca_variance, svd_solver="full", random_state=settings.random_state)),
            (
                "kmeans",
                KMeans(n_clusters=settings.n_segments, n_init=settings.kmeans_n_init, random_state=settings.random_state),
            ),
        ]
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


@dataclass
class FittedModel:
    pipeline: Pipeline
    specs: list[FeatureSpec]
    settings: FitSettings
    segment_of_label: np.ndarray  # KMeans label -> segment id (1 = largest segment)
    segments: pd.DataFrame  # one row per segment id: names, persona, training size
    metrics: list[tuple[str, int | None, int | None, float]]  # (metric, segment_id, component, value)
    eligible_users: int
    training_users: int

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Segment id of each row, exactly as the SQL scoring computes it."""
        return self.segment_of_label[self.pipeline.predict(frame[self.feature_names].to_numpy(dtype=float))]


def fit_model(
    training: pd.DataFrame,
    feature_config: pd.DataFrame,
    personas: pd.DataFrame,
    traits: pd.DataFrame,
    settings: FitSettings,
    eligible_users: int,
) -> FittedModel:
    """Fit on `training` (user_features rows, sorted by user_id) and name the segments."""
    specs = feature_specs(feature_config)
    if len(training) < settings.n_segments:
        raise ValueError(
            f"only {len(training)} shoppers have at least {settings.min_events} events: "
            f"too few to fit {settings.n_segments} segments"
        )
    pipeline = build_pipeline(specs, settings)
    values = training[[spec.name for spec in specs]].to_numpy(dtype=float)
    labels = pipeline.fit(values).predict(values)

    # Segment 1 is the largest; ties keep KMeans' order.
    sizes = np.bincount(labels, minlength=settings.n_segments)
    order = sorted(range(settings.n_segments), key=lambda label: (-sizes[label], label))
    segment_of_label = np.empty(settings.n_segments, dtype=np.int64)
    for position, label in enumerate(order):
        segment_of_label[label] = position + 1
    segment_ids = segment_of_label[labels]

    segments = name_segments(training, segment_ids, settings.n_segments, personas, traits)
    segments["training_users"] = [int((segment_ids == s).sum()) for s in segments["segment_id"]]
    model = FittedModel(pipeline, specs, settings, segment_of_label, segments, [], eligible_users, len(training))
    model.metrics = fit_metrics(model, values, segment_ids)
    return model


def name_segments(
    training: pd.DataFrame, segment_ids: np.ndarray, n_segments: int, personas: pd.DataFrame, traits: pd.DataFrame
) -> pd.DataFrame:
    """Give each segment the persona whose traits it matches best (one persona per segment).

    A segment's position on a feature is the mean percentile of its members among all training
    shoppers, centred on 0 and scaled to [-1, 1]: robust to heavy tails and comparable across
    features. A persona's score is the weighted sum of those positions over its traits; the
    Hungarian algorithm picks the assignment with the highest total score.
    """
    trait_features = [f for f in traits["feature_name"].unique() if f in training.columns]
    percentiles = training[trait_features].astype(float).rank(pct=True).fillna(0.5)
    position = (percentiles.groupby(segment_ids).mean() - 0.5) * 2
    position = position.reindex(range(1, n_segments + 1)).fillna(0.0)

    persona_keys = list(personas["persona_key"])
    weights = (
        traits[traits["feature_name"].isin(trait_features)]
        .pivot_table(index="persona_key", columns="feature_name", values="weight", aggfunc="sum")
        .reindex(index=persona_keys, columns=trait_features)
        .fillna(0.0)
    )
    scores = position.to_numpy() @ weights.to_numpy().T  # segments x personas
    rows, cols = linear_sum_assignment(-scores)
    chosen = dict(zip(rows, cols))

    records = []
    for index, segment_id in enumerate(range(1, n_segments + 1)):
        if index in chosen:
            persona = personas.iloc[chosen[index]]
            records.append(
                {
                    "segment_id": segment_id,
                    "persona_key": persona["persona_key"],
                    "segment_name": persona["segment_name"],
                    "description": persona["description"],
                    "marketing_action": persona["marketing_action"],
                    "persona_score": float(scores[index, chosen[index]]),
                }
            )
        else:  # more segments than personas
            records.append(
                {
                    "segment_id": segment_id,
                    "persona_key": "unnamed",
                    "segment_name": f"Segment {segment_id}",
                    "description": "Mixed behaviour that matches no persona of the catalogue.",
                    "marketing_action": "General newsletter; review this segment's profile before targeting it.",
                    "persona_score": 0.0,
                }
            )
    return pd.DataFrame.from_records(records)


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
    metrics.append(("inertia", None, None, float(pipeline.named_steps["kmeans"].inertia_)))
    if len(np.unique(segment_ids)) > 1:
        sample = min(settings.silhouette_sample, len(values))
        metrics.append(
            ("silhouette", None, None,
             float(silhouette_score(projected, segment_ids, sample_size=sample, random_state=settings.random_state)))
        )
        metrics.append(("davies_bouldin", None, None, float(davies_bouldin_score(projected, segment_ids))))
        metrics.append(("calinski_harabasz", None, None, float(calinski_harabasz_score(projected, segment_ids))))
    for segment_id in range(1, settings.n_segments + 1):
        size = int((segment_ids == segment_id).sum())
        metrics.append(("segment_size", segment_id, None, float(size)))
        metrics.append(("segment_share", segment_id, None, size / len(segment_ids)))
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

    centers = model.pipeline.named_steps["kmeans"].cluster_centers_
    for label, segment_id in enumerate(model.segment_of_label):
        for component in range(centers.shape[1]):
            add("kmeans", "centroid", component=component + 1, segment=int(segment_id), value=float(centers[label, component]))

    for segment in model.segments.itertuples(index=False):
        for field in ("persona_key", "segment_name", "description", "marketing_action"):
            add("segment", field, segment=int(segment.segment_id), text=str(getattr(segment, field)))
        add("segment", "persona_score", segment=int(segment.segment_id), value=float(segment.persona_score))

    for metric, segment_id, component, value in model.metrics:
        add("metric", metric, segment=segment_id, component=component, value=value)

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
) -> tuple[pd.DataFrame, FittedModel | None]:
    """Fit a model version and return its parameter rows (empty when the inputs are unchanged)."""
    chosen = choose_training_users(inputs.eligible_user_ids, settings)
    training = inputs.fetch_features(chosen)
    fingerprint = training_fingerprint(training, inputs.feature_config, settings)
    if fingerprint == latest_fingerprint:
        return empty_params(), None
    model = fit_model(training, inputs.feature_config, inputs.personas, inputs.traits, settings, len(inputs.eligible_user_ids))
    trained_at = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    return to_params(model, (latest_version or 0) + 1, fingerprint, trained_at), model
