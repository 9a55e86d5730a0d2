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
4. A persona **fits** a segment when it scores at least `min_persona_score` and the centroid
   meets each of the persona's defining traits (weight |w| >= 1) by DEFINING_MARGIN: centroid_z at
   least DEFINING_MARGIN SD in the direction of the weight. A defining trait on a feature the
   training shoppers do not spread on (every centroid at the population value, e.g. `removes` in a
   store that logs no remove_from_cart) measures nothing and is not required; a persona none of
   whose defining traits is measured fits no segment. No persona fits any segment unless the
   structure verdict of the version is `clear` (structure.py): a partition of a continuum (`none`)
   is not a set of personas, and neither are tendencies barely stronger than in structureless
   data (`weak`: measured on a world with no segments, 100,000 shoppers, k = 12, docs/model.md).
5. On a retraining, a segment matched to a previous one keeps its persona while it still fits; the
   other segments get fitting personas by the Hungarian algorithm (each persona at most once,
   highest total score).
6. A segment no persona fits gets a **descriptive** name (persona_key `descriptive`) from its
   strongest trait (TRAIT_WORDS), e.g. "Night-time shoppers"; when two segments of a version would
   share a name, their next traits are added in brackets, e.g. "Night-time shoppers (number of
   visits +1.4 SD)". Its marketing action follows from its two
   strongest traits (TRAIT_ACTIONS).
Names therefore follow the data, and the rules can be checked from the stored parameters alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

DISTINCTIVE_Z = 0.5
PORTRAIT_TRAITS = 3
DEFINING_WEIGHT = 1.0  # a persona's traits with at least this |weight| define it
DEFINING_MARGIN = 0.25  # SD the centroid must reach on each defining trait, in the weight's direction
DESCRIPTIVE = "descriptive"
UNMEASURED_Z = 1e-9  # |centroid_z| of every segment below this: the feature has no spread in training

# Words of a descriptive name: feature -> (name when the segment is above, name when below the population).
TRAIT_WORDS: dict[str, tuple[str, str]] = {
    "sessions": ("Frequent visitors", "Rare visitors"),
    "active_days": ("Many-day visitors", "Single-day visitors"),
    "removes": ("Cart editors", "Shoppers who never edit carts"),
    "purchases": ("Repeat buyers", "Non-buyers"),
    "view_to_cart_rate": ("Cart fillers", "Lookers who rarely cart"),
    "cart_to_purchase_rate": ("Cart completers", "Unfinished-cart shoppers"),
    "cart_abandonment_rate": ("Cart leavers", "Cart finishers"),
    "session_conversion_rate": ("Converting visitors", "Non-converting visitors"),
    "avg_viewed_price": ("High-price browsers", "Low-price browsers"),
    "distinct_categories": ("Wide-range browsers", "Single-category browsers"),
    "top_category_share": ("Category-focused shoppers", "Category hoppers"),
    "brand_loyalty": ("Brand-loyal shoppers", "Brand-agnostic shoppers"),
    "night_share": ("Night-time shoppers", "Daytime shoppers"),
    "weekend_share": ("Weekend shoppers", "Weekday shoppers"),
    "avg_session_duration_seconds": ("Long-visit shoppers", "Short-visit shoppers"),
    "events_per_session": ("Deep browsers", "Quick lookers"),
    "marketing_period_share": ("Sale-day shoppers", "Off-sale shoppers"),
    "share_electronics": ("Electronics-focused browsers", "Non-electronics browsers"),
    "share_computers": ("Computer-focused browsers", "Non-computer browsers"),
}
# The action a trait calls for: feature -> (action when above, action when below the population).
TRAIT_ACTIONS: dict[str, tuple[str, str]] = {
    "sessions": ("reward return visits with loyalty points", "a welcome-back series after the first visit"),
    "active_days": ("early access to new arrivals for regular visitors", "a reminder a few days after the visit"),
    "removes": ("a reminder of the items taken out of the cart", "no cart-based campaign"),
    "purchases": ("cross-sell after each order", "a first-purchase voucher"),
    "view_to_cart_rate": ("cart reminders within 24 hours", "reviews and social proof on viewed products"),
    "cart_to_purchase_rate": ("one-click reorder reminders", "free-delivery threshold on carted items"),
    "cart_abandonment_rate": ("cart-reminder e-mail with a time-limited discount", "cross-sell at checkout"),
    "session_conversion_rate": ("complementary-product recommendations", "a first-purchase voucher"),
    "avg_viewed_price": ("premium ranges, warranty and instalments", "price-drop alerts and coupons"),
    "distinct_categories": ("inspiration newsletter across categories", "newsletter on the one category viewed"),
    "top_category_share": ("newsletter on the favourite category", "inspiration newsletter across categories"),
    "brand_loyalty": ("new arrivals of the favourite brand", "brand comparisons and bestsellers"),
    "night_share": ("send offers in the late evening", "send offers in the daytime"),
    "weekend_share": ("weekend promotions sent on Friday evening", "weekday promotions"),
    "avg_session_duration_seconds": ("comparison guides and reviews", "short, visual offers"),
    "events_per_session": ("comparison guides and reviews", "short, visual offers"),
    "marketing_period_share": ("flash-sale alerts timed for sale days", "everyday-price messages"),
    "share_electronics": ("electronics news and accessories", "home and lifestyle catalogues"),
    "share_computers": ("computer and peripheral offers", "non-tech catalogues"),
}


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


def measured_features(profiles: pd.DataFrame) -> set[str]:
    """The model features some segment's centroid departs from the population on (rule 4).

    A feature the training shoppers do not spread on (constant, or constant once clipped to its
    training percentiles) is standardised to 0 for everyone, so every centroid sits exactly at the
    population: no segment can meet a trait on it, whatever the shoppers do.
    """
    spread = profiles.groupby("feature_name")["centroid_z"].agg(lambda z: float(np.abs(z).max()))
    return set(spread.index[spread > UNMEASURED_Z])


def fits(profiles: pd.DataFrame, traits: pd.DataFrame, segment_id: int, persona: str, score: float,
         min_score: float, measured: set[str]) -> bool:
    """Rule 4: the persona scores enough and the centroid meets each defining trait by the margin
    (`measured`: the features of measured_features(profiles))."""
    if score < min_score:
        return False
    z = profiles[profiles["segment_id"] == segment_id].set_index("feature_name")["centroid_z"]
    own = traits[(traits["persona_key"] == persona) & (traits["weight"].abs() >= DEFINING_WEIGHT)]
    own = own[own["feature_name"].isin(measured)]
    if own.empty:  # none of its defining traits is measured by the model: nothing to meet
        return False
    return bool((np.sign(own["weight"].to_numpy()) * z.loc[own["feature_name"]].to_numpy() >= DEFINING_MARGIN).all())


def _ranked_traits(profile: pd.DataFrame) -> list[tuple[str, float, str]]:
    """(feature, centroid_z, label) of a segment, strongest first."""
    ordered = profile.reindex(profile["centroid_z"].abs().sort_values(ascending=False, kind="stable").index)
    return list(zip(ordered["feature_name"], ordered["centroid_z"], ordered["label"]))


def _trait_words(feature: str, z: float, label: str) -> str:
    high, low = TRAIT_WORDS.get(feature, (f"Shoppers with higher {label}", f"Shoppers with lower {label}"))
    return high if z > 0 else low


def _trait_action(feature: str, z: float, label: str) -> str:
    high, low = TRAIT_ACTIONS.get(feature, (f"offers suited to a higher {label}", f"offers suited to a lower {label}"))
    return high if z > 0 else low


def descriptive_label(profile: pd.DataFrame, detail: int = 0) -> tuple[str, str]:
    """Rule 6: (name, marketing action) of a segment no persona fits; `detail` more traits in brackets."""
    ranked = _ranked_traits(profile)
    if not ranked:
        return "Average shoppers", "General newsletter with bestsellers."
    name = _trait_words(*ranked[0])
    extra = [f"{label} {z:+.1f} SD" for _, z, label in ranked[1:1 + detail]]
    if extra:
        name = f"{name} ({', '.join(extra)})"
    actions = [_trait_action(*trait) for trait in ranked[:2]]
    action = "; ".join(dict.fromkeys(actions))  # two traits may call for the same action
    return name, action[0].upper() + action[1:] + "."


def name_segments(
    profiles: pd.DataFrame,
    personas: pd.DataFrame,
    traits: pd.DataFrame,
    kept: dict[int, str],
    min_score: float,
    verdict: str = "clear",
) -> pd.DataFrame:
    """One row per segment: persona_key, segment_name, description, marketing_action, persona_score, traits."""
    scores = persona_scores(profiles, personas, traits)
    measured = measured_features(profiles)  # the same for every segment and persona

    def fitting(segment: int, persona: str) -> bool:
        return verdict == "clear" and fits(profiles, traits, segment, persona, scores.loc[segment, persona], min_score,
                                           measured)

    chosen: dict[int, str] = {
        segment: persona for segment, persona in kept.items()
        if persona in scores.columns and segment in scores.index and fitting(segment, persona)
    }
    free_segments = [s for s in scores.index if s not in chosen]
    free_personas = [p for p in scores.columns if p not in set(chosen.values())]
    if free_segments and free_personas:
        matrix = scores.loc[free_segments, free_personas].to_numpy()
        allowed = np.array([[fitting(s, p) for p in free_personas] for s in free_segments])
        rows, cols = linear_sum_assignment(-np.where(allowed, matrix, -1e6))
        for r, c in zip(rows, cols):
            if allowed[r, c]:
                chosen[free_segments[r]] = free_personas[c]

    catalogue = personas.set_index("persona_key")
    records = []
    for segment_id in scores.index:
        profile = profiles[profiles["segment_id"] == segment_id]
        traits_text = distinctive_text(profile)
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
            name, action = descriptive_label(profile)
            records.append(
                {
                    "segment_id": int(segment_id),
                    "persona_key": DESCRIPTIVE,
                    "segment_name": name,
                    "description": f"No persona fits; named after its traits: shoppers with {traits_text}.",
                    "marketing_action": action,
                    "persona_score": best,
                    "distinctive_traits": traits_text,
                }
            )
    return _unique_names(pd.DataFrame.from_records(records), profiles)


def _unique_names(named: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """Rule 6: descriptive names shared within a version get their next traits in brackets."""
    for detail in range(1, 4):
        taken = named["segment_name"].duplicated(keep=False) & (named["persona_key"] == DESCRIPTIVE)
        if not taken.any():
            return named
        for index in named.index[taken]:
            profile = profiles[profiles["segment_id"] == named.at[index, "segment_id"]]
            named.at[index, "segment_name"] = descriptive_label(profile, detail)[0]
    taken = named["segment_name"].duplicated(keep=False) & (named["persona_key"] == DESCRIPTIVE)
    named.loc[taken, "segment_name"] += " (group " + named.loc[taken, "segment_id"].astype(str) + ")"  # last resort
    return named
