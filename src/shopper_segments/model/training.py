"""Fit a new version of the segmentation model and write it as one tidy table of parameters.

k is chosen over a range (`selection`); on a retraining, segments are matched to the previous
version's so a segment keeps its id and name (`identity`); names, portraits and actions follow the
centroids (`naming`); the verdict on whether there is structure to segment at all is `structure`'s.
The building blocks (settings, preprocessing, parameter table, stored model) are in `params`.

The same code serves the dbt Python model `segment_model` (DuckDB) and `segments fit`
(warehouses without Python models): only reading and writing differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from . import drift, identity, naming, selection, structure
from .params import (
    PARAM_COLUMNS,
    FeatureSpec,
    FitSettings,
    HeavyTailPreprocessor,
    StoredModel,
    build_preprocessing,
    choose_training_users,
    current_version,
    empty_params,
    feature_specs,
    kmeans,
    no_fit_message,
    single_threaded,
    too_few_to_fit,
)


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
    k_choice: "object" = None  # selection.KChoice
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
    specs = feature_specs(feature_config)
    shortfall = too_few_to_fit(len(training), settings)
    if shortfall:
        raise ValueError(f"too few shoppers to fit: {shortfall}")
    values = training[[spec.name for spec in specs]].to_numpy(dtype=float)
    preprocessing = build_preprocessing(specs, settings)
    projected = preprocessing.fit_transform(values)

    previous_k = len(previous.segment_ids) if previous is not None else None
    if settings.n_segments:
        choice = selection.KChoice(settings.n_segments, "fixed by the n_segments var", None)
    else:
        scan = selection.scan_k(projected, settings)
        choice = selection.choose_k(scan, settings, previous_k)
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
        k_choice=choice, pca_curve=selection.pca_curve(pipeline, values), traits=profiles,
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

    if model.k_choice.scan is not None:  # stored so that segment_k_selection need not run it again
        for scan_row in model.k_choice.scan.itertuples(index=False):
            for name in selection.SCAN_COLUMNS:
                if name != "k":
                    add("k_scan", name, component=int(scan_row.k), value=float(getattr(scan_row, name)))

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


def fit_if_due(
    current_params: pd.DataFrame | None,
    retrain: bool,
    settings: FitSettings,
    read_inputs: Callable[[], TrainingInputs],
) -> pd.DataFrame:
    """The fit step of both paths (the dbt Python model on DuckDB, `segments fit` elsewhere): the
    parameter rows of a new version, or none. `current_params` are the rows of the current version
    (None or empty when there is none).

    The current version is kept unless `retrain`; too few eligible shoppers fit nothing (and say so in
    one line); a retrain on unchanged inputs adds nothing (training fingerprint). `read_inputs` is only
    called when a fit may happen, so a daily run reads nothing.
    """
    if current_params is not None and len(current_params) and not retrain:
        return empty_params()
    latest_version, latest_fingerprint, current_params = current_version(current_params)
    inputs = read_inputs()
    no_fit = no_fit_message(len(inputs.eligible_user_ids), settings, latest_version)
    if no_fit:
        print(no_fit, flush=True)
        return empty_params()
    new_rows, _ = train_new_version(inputs, settings, latest_version, latest_fingerprint, current_params)
    return new_rows


def with_rows(params: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """`params` plus more parameter rows of the same version (e.g. drift's training bins)."""
    extra = pd.DataFrame.from_records(rows, columns=[c for c in PARAM_COLUMNS if c not in ("model_version", "trained_at")])
    extra.insert(0, "model_version", params.model_version.iloc[0])
    extra["trained_at"] = params.trained_at.iloc[0]
    return pd.concat([params, extra[list(PARAM_COLUMNS)].astype(PARAM_COLUMNS)], ignore_index=True)


def training_sample(inputs: TrainingInputs, settings: FitSettings) -> pd.DataFrame:
    """The training shoppers of a fit with these settings (what the post-fit analyses study)."""
    return inputs.fetch_features(choose_training_users(inputs.eligible_user_ids, settings))


