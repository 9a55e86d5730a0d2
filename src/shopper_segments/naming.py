"""Names, portraits and marketing actions, derived from the centroids by explicit rules.

Rules (docs/model.md, "Names"):
1. A segment's **profile** is its centroid brought back from the PCA space to the standardised
   features: on each model feature, how many training standard deviations the typical member sits
   above (+) or below (-) the whole population (`centroid_z`).
2. Its **distinctive traits** are the features with |centroid_z| >= 0.5, strongest first (at most
   three are written in the portrait): what makes the segment singular.
3. Each persona of `seeds/segment_personas.csv` scores sum(weight x position) over its traits
   (`seeds/segment_persona_traits.csv`), position = centroid_z clipped to [-2, 2] and halved
   (so one extreme feature cannot name a segment on its own).
4. On a retraining, a segment matched to a previous one keeps its persona while that persona still
   scores at least `min_persona_score`; the other segments get personas by the Hungarian algorithm
   (each persona at most once, highest total score).
5. A segment whose best available persona scores below `min_persona_score` is not forced into a
   persona: it is named "Segment <id>" and its portrait lists its distinctive traits.
Names therefore follow the data, and the rules can be checked from the stored parameters alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

DISTINCTIVE_Z = 0.5
PORTRAIT_TRAITS = 3
UNNAMED_ACTION = "General newsletter; review this segment's profile before targeting it."


@dataclass
class SegmentSpace:
    """The centroids of a fitted pipeline in standardised and in transformed feature units."""

    features: list[str]
    labels: list[str]
    log1p: np.ndarray
    center: np.ndarray  # training mean of each transformed feature
    scale: np.ndarray  # training standard deviation of each transformed feature
    z_centroids: np.ndarray  # KMeans label x feature, in training standard deviations

    @classmethod
    def of(cls, pipeline, specs) -> "SegmentSpace":
        scale = pipeline.named_steps["scale"]
        pca = pipeline.named_steps["pca"]
        z = pca.inverse_transform(pipeline.named_steps["kmeans"].cluster_centers_)
        return cls(
            features=[s.name for s in specs],
            labels=[s.label or s.name for s in specs],
            log1p=np.array([s.log1p for s in specs]),
            center=scale.mean_,
            scale=scale.scale_,
            z_centroids=z,
        )

    @property
    def feature_centroids(self) -> np.ndarray:
        """Transformed units (after log1p and clipping): comparable across model versions."""
        return self.z_centroids * self.scale + self.center

    def natural_units(self, transformed: np.ndarray) -> np.ndarray:
        return np.where(self.log1p, np.expm1(transformed), transformed)


def centroid_profiles(space: SegmentSpace, segment_of_label: np.ndarray) -> pd.DataFrame:
    """One row per segment and model feature: centroid_z, the centroid and the population in natural units."""
    rows = []
    population = space.natural_units(space.center)
    centroids = space.natural_units(space.feature_centroids)
    for label, segment_id in enumerate(segment_of_label):
        z = space.z_centroids[label]
        order = [i for i in np.argsort(-np.abs(z), kind="stable") if abs(z[i]) >= DISTINCTIVE_Z]
        rank = {i: r + 1 for r, i in enumerate(order)}
        for i, feature in enumerate(space.features):
            rows.append(
                {
                    "segment_id": int(segment_id),
                    "feature_name": feature,
                    "label": space.labels[i],
                    "centroid_z": float(z[i]),
                    "centroid_value": float(centroids[label, i]),
                    "population_value": float(population[i]),
                    "distinctive_rank": float(rank[i]) if i in rank else np.nan,
                }
            )
    return pd.DataFrame(rows).sort_values(["segment_id", "feature_name"]).reset_index(drop=True)


def distinctive_text(profile: pd.DataFrame) -> str:
    """e.g. "higher night-time activity (+1.9 SD); lower viewed price level (-1.2 SD)"."""
    top = profile.dropna(subset=["distinctive_rank"]).sort_values("distinctive_rank").head(PORTRAIT_TRAITS)
    if top.empty:
        return "close to the average shopper on every model feature"
    return "; ".join(
        f"{'higher' if row.centroid_z > 0 else 'lower'} {row.label} ({row.centroid_z:+.1f} SD)"
        for row in top.itertuples(index=False)
    )


def persona_scores(profiles: pd.DataFrame, personas: pd.DataFrame, traits: pd.DataFrame) -> pd.DataFrame:
    """Segments x personas: sum of weight x position over the persona's traits that are model features."""
    position = (
        profiles.pivot_table(index="segment_id", columns="feature_name", values="centroid_z").clip(-2, 2) / 2
    )
    weights = (
        traits[traits["feature_name"].isin(position.columns)]
        .pivot_table(index="persona_key", columns="feature_name", values="weight", aggfunc="sum")
        .reindex(index=list(personas["persona_key"]), columns=position.columns)
        .fillna(0.0)
    )
    return pd.DataFrame(position.to_numpy() @ weights.to_numpy().T, index=position.index, columns=weights.index)


def name_segments(
    profiles: pd.DataFrame,
    personas: pd.DataFrame,
    traits: pd.DataFrame,
    kept: dict[int, str],
    min_score: float,
) -> pd.DataFrame:
    """One row per segment: persona_key, segment_name, description, marketing_action, persona_score, traits."""
    scores = persona_scores(profiles, personas, traits)
    chosen: dict[int, str] = {
        segment: persona for segment, persona in kept.items()
        if persona in scores.columns and segment in scores.index and scores.loc[segment, persona] >= min_score
    }
    free_segments = [s for s in scores.index if s not in chosen]
    free_personas = [p for p in scores.columns if p not in set(chosen.values())]
    if free_segments and free_personas:
        matrix = scores.loc[free_segments, free_personas].to_numpy()
        rows, cols = linear_sum_assignment(-matrix)
        for r, c in zip(rows, cols):
            if matrix[r, c] >= min_score:
                chosen[free_segments[r]] = free_personas[c]

    catalogue = personas.set_index("persona_key")
    records = []
    for segment_id in scores.index:
        traits_text = distinctive_text(profiles[profiles["segment_id"] == segment_id])
        persona = chosen.get(segment_id)
        if persona is not None:
            records.append(
                {
                    "segment_id": int(segment_id),
                    "persona_key": persona,
                    "segment_name": catalogue.loc[persona, "segment_name"],
                    "description": catalogue.loc[persona, "description"],
                    "marketing_action": catalogue.loc[persona, "marketing_action"],
                    "persona_score": float(scores.loc[segment_id, persona]),
                    "distinctive_traits": traits_text,
                }
            )
        else:
            best = float(scores.loc[segment_id].max()) if len(scores.columns) else 0.0
            records.append(
                {
                    "segment_id": int(segment_id),
                    "persona_key": "unnamed",
                    "segment_name": f"Segment {int(segment_id)}",
                    "description": f"No persona fits; shoppers with {traits_text}.",
                    "marketing_action": UNNAMED_ACTION,
                    "persona_score": best,
                    "distinctive_traits": traits_text,
                }
            )
    return pd.DataFrame.from_records(records)
