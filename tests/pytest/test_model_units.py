"""The model's rules, in process, on small synthetic shoppers: k choice, stable ids, naming,
stored-model predictions, feature pruning, threshold and rule helpers. Real scikit-learn fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from shopper_segments.model import identity, naming, params as model_params, selection, training
from shopper_segments.model.analyses import assignment, k_and_features, threshold
from conftest import PROJECT

FEATURES = ["night_share", "avg_viewed_price", "session_conversion_rate", "sessions"]
# Four planted groups, each high on one feature (in standardised units).
CENTRES = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 3.0]])
PERSONAS = pd.DataFrame(
    {
        "persona_key": ["owl", "premium", "buyer", "regular"],
        "segment_name": ["Night owls", "Premium", "Buyers", "Regulars"],
        "description": ["At night.", "Dear products.", "They buy.", "They come back."],
        "marketing_action": ["Late mails.", "Warranty.", "Cross-sell.", "Loyalty card."],
    }
)
TRAITS = pd.DataFrame(
    {
        "persona_key": ["owl", "premium", "buyer", "regular", "regular"],
        "feature_name": ["night_share", "avg_viewed_price", "session_conversion_rate", "sessions", "night_share"],
        "weight": [1.0, 1.0, 1.0, 1.0, -0.2],
    }
)


def feature_config(features=FEATURES) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature_name": features,
            "family": "time",
            "transform": "none",
            "impute": "0",
            "in_model": "true",
            "label": [f.replace("_", " ") for f in features],
            "rationale": "test",
        }
    )


def shoppers(n_per_group: int, seed: int, centres=CENTRES, first_id: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    blocks = [c + rng.normal(0, 0.6, size=(n_per_group, len(FEATURES))) for c in centres]
    frame = pd.DataFrame(np.vstack(blocks), columns=FEATURES)
    frame["planted"] = np.repeat(np.arange(len(centres)), n_per_group)
    frame.insert(0, "user_id", np.arange(first_id, first_id + len(frame)))
    frame["events"] = 20
    return frame


def fit(frame: pd.DataFrame, previous: model_params.StoredModel | None = None, **overrides) -> training.FittedModel:
    settings = model_params.FitSettings(
        k_max=8, scan_sample_size=2000, scan_bootstraps=3, kmeans_n_init=4, min_events=1, **overrides
    )
    return training.fit_model(frame, feature_config(), PERSONAS, TRAITS, settings, len(frame), previous)


@pytest.fixture(scope="module")
def first() -> tuple[pd.DataFrame, training.FittedModel, pd.DataFrame]:
    frame = shoppers(300, seed=1)
    model = fit(frame)
    params = training.to_params(model, 1, "f1", pd.Timestamp("2020-01-01").to_pydatetime())
    return frame, model, params


def test_k_scan_finds_the_planted_groups_and_names_them(first):
    frame, model, _ = first
    assert model.n_segments == 4
    assert "largest silhouette excess" in model.k_choice.reason
    segments = model.predict(frame)
    assert pd.crosstab(frame["planted"], segments).max(axis=1).sum() / len(frame) > 0.98
    majority = pd.crosstab(frame["planted"], segments).idxmax(axis=1)
    persona_of = model.segments.set_index("segment_id")["persona_key"]
    assert list(majority.map(persona_of)) == ["owl", "premium", "buyer", "regular"]
    # The first version numbers segments by size: 1 is the largest.
    sizes = pd.Series(segments).value_counts()
    assert sizes.index[0] == 1 and sorted(sizes.index) == [1, 2, 3, 4]


def test_stored_model_predicts_like_the_fitted_pipeline(first):
    frame, model, params = first
    stored = model_params.StoredModel.from_params(params)
    assert stored.version == 1 and stored.features == FEATURES
    assert (stored.predict(frame) == model.predict(frame)).all()
    assert stored.settings == model.settings
    assert stored.segment_names() == dict(zip(model.segments["segment_id"], model.segments["segment_name"]))


def test_retraining_on_new_shoppers_keeps_ids_and_names(first):
    frame, model, params = first
    newer = shoppers(300, seed=2, first_id=10_000)  # same groups, other shoppers
    stored = model_params.StoredModel.from_params(params)
    retrained = fit(newer, previous=stored)
    before, after = stored.predict(newer), retrained.predict(newer)
    assert (before == after).mean() > 0.98
    assert retrained.lineage["same_segment_share"] == pytest.approx((before == after).mean())
    assert retrained.lineage["new_segments"] == 0 and retrained.lineage["retired_segments"] == 0
    assert (retrained.segments["previous_segment_id"] == retrained.segments["segment_id"]).all()
    assert dict(zip(retrained.segments.segment_id, retrained.segments.segment_name)) == stored.segment_names()


def test_a_new_group_gets_a_fresh_id_never_used_before(first):
    _, _, params = first
    stored = model_params.StoredModel.from_params(params)
    centres = np.vstack([CENTRES, [[3.0, 3.0, 3.0, 3.0]]])  # a fifth, new behaviour
    newer = shoppers(300, seed=3, centres=centres)
    retrained = fit(newer, previous=stored, n_segments=5)
    ids = set(retrained.segments["segment_id"])
    assert {1, 2, 3, 4} <= ids and ids - {1, 2, 3, 4} == {5}
    new = retrained.segments.set_index("segment_id").loc[5]
    assert pd.isna(new["previous_segment_id"]) and new["match_distance"] > 0.5
    assert retrained.max_segment_id == 5


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=8),
    matched=st.lists(st.booleans(), min_size=8, max_size=8),
    max_previous=st.integers(0, 20),
)
def test_assigned_ids_are_unique_keep_matches_and_are_fresh_otherwise(sizes, matched, max_previous):
    previous_ids = list(range(1, max_previous + 1))
    matches, used = [], iter(previous_ids)
    for label in range(len(sizes)):
        keep = next(used, None) if matched[label] else None
        matches.append(identity.Match(label, keep, 0.1 if keep else 9.0))

    class Previous:
        max_segment_id = max_previous

    ids, highest = identity.assign_ids(np.array(sizes), matches, Previous())
    assert len(set(ids)) == len(ids)
    for m in matches:
        if m.previous_segment_id is not None:
            assert ids[m.label] == m.previous_segment_id
        else:
            assert ids[m.label] > max_previous
    assert highest == max(max_previous, int(ids.max()))


def scan(rows, nulls=None):
    """A scan table from (k, silhouette excess over the null, stability) rows; the null silhouette of
    each k from `nulls` (k -> value), 0.1 otherwise."""
    frame = pd.DataFrame(rows, columns=["k", "silhouette_excess", "stability_ari"])
    frame["null_silhouette"] = frame["k"].map(nulls or {}).fillna(0.1)
    frame["silhouette"] = frame["silhouette_excess"] + frame["null_silhouette"]
    for column in ("inertia", "davies_bouldin", "calinski_harabasz", "stability_ari_std", "smallest_segment_share"):
        frame[column] = 1.0
    frame["inertia"] = 100.0 / frame["k"]
    return frame


def test_choose_k_takes_the_largest_silhouette_excess_among_stable_k():
    settings = model_params.FitSettings()
    table = scan([(2, 0.30, 0.99), (3, 0.40, 0.70), (4, 0.35, 0.95), (5, 0.20, 0.95)])
    assert selection.choose_k(table, settings).k == 4  # k=3 separates better but is unstable
    unstable = scan([(2, 0.30, 0.50), (3, 0.40, 0.60)])
    choice = selection.choose_k(unstable, settings)
    assert choice.k == 3 and "No k reached" in choice.reason


def test_choose_k_prefers_the_excess_over_the_null_to_the_raw_silhouette():
    # The calibrated world's shape: k = 2 has the highest silhouette (0.30), but a structureless copy
    # scores 0.27 there; k = 9 separates less (0.26) yet much better than its null (0.12).
    table = scan([(2, 0.03, 0.99), (5, 0.09, 0.95), (9, 0.14, 0.95)], nulls={2: 0.27, 5: 0.13, 9: 0.12})
    assert table.sort_values("silhouette")["k"].iloc[-1] == 2
    choice = selection.choose_k(table, model_params.FitSettings())
    assert choice.k == 9 and "against 0.120 with the structure removed (excess 0.140)" in choice.reason


def test_stored_scan_of_a_version_fitted_before_the_null_reads_it_as_missing(first):
    _, _, params = first
    old_version = params[~((params["param_group"] == "k_scan")
                           & params["param_name"].isin(selection.NULL_SCAN_COLUMNS))]
    stored = k_and_features.stored_scan(old_version, 1)
    assert list(stored.columns) == list(selection.SCAN_COLUMNS)
    assert stored[list(selection.NULL_SCAN_COLUMNS)].isna().all().all()
    assert stored["silhouette"].notna().all()
    current = k_and_features.stored_scan(params, 1)
    assert np.allclose(current["silhouette_excess"], current["silhouette"] - current["null_silhouette"])


def test_choose_k_breaks_excess_ties_by_stability_then_keeps_the_previous_k():
    settings = model_params.FitSettings(excess_tolerance=0.02, stability_tolerance=0.02)
    # The planted case: a 7th segment splitting a broad one separates a bit better but is less reproducible.
    table = scan([(5, 0.294, 0.90), (6, 0.305, 0.98), (7, 0.315, 0.87), (8, 0.276, 0.96)])
    choice = selection.choose_k(table, settings)
    assert choice.k == 6 and "k=6, k=7 are within 0.020" in choice.reason
    assert selection.choose_k(table, settings, previous_k=7).k == 7  # a retraining keeps its k
    assert selection.choose_k(table, settings, previous_k=8).k == 6  # unless it is no longer tied
    assert selection.choose_k(table, model_params.FitSettings(excess_tolerance=0.005)).k == 7
    # Equally stable (within 0.02): the excess decides, not a stability difference of noise.
    flat = scan([(4, 0.275, 0.969), (5, 0.271, 0.939), (6, 0.290, 0.966)])
    assert selection.choose_k(flat, settings).k == 6


def test_names_follow_the_centroids_and_a_weak_match_gets_a_descriptive_name():
    profiles = pd.DataFrame(
        [
            (1, "night_share", 1.8), (1, "sessions", 0.1),
            (2, "night_share", 0.0), (2, "sessions", 1.5),
            (3, "night_share", 0.1), (3, "sessions", 0.2),
        ],
        columns=["segment_id", "feature_name", "centroid_z"],
    )
    profiles["label"] = profiles["feature_name"].str.replace("_", " ")
    profiles["distinctive_rank"] = np.where(profiles["centroid_z"].abs() >= 0.5, 1.0, np.nan)
    named = naming.name_segments(profiles, PERSONAS, TRAITS, kept={}, min_score=0.5).set_index("segment_id")
    assert named.loc[1, "persona_key"] == "owl" and named.loc[2, "persona_key"] == "regular"
    # No persona fits segment 3: it is named after its strongest trait, never "Segment 3".
    assert named.loc[3, "persona_key"] == "descriptive" and named.loc[3, "segment_name"] == "Frequent visitors"
    assert named.loc[3, "marketing_action"].startswith("Reward return visits")
    assert "higher night share (+1.8 SD)" in named.loc[1, "distinctive_traits"]
    # A continued segment keeps its persona while it still fits, even if another would score higher.
    kept = naming.name_segments(profiles, PERSONAS, TRAITS, kept={2: "owl", 1: "regular"}, min_score=0.5)
    kept = kept.set_index("segment_id")
    assert kept.loc[1, "persona_key"] == "owl"  # "regular" no longer fits segment 1: renamed by the data
    assert kept.loc[2, "persona_key"] == "regular"


def test_a_defining_trait_on_a_feature_without_spread_does_not_block_its_persona():
    """The multi-category store logs no remove_from_cart, so `removes` is 0 for every shopper and every
    centroid sits on the population there: a persona defined partly by removes (cart abandoners) could
    never be named. Such a trait measures nothing and is skipped; the persona's other traits decide."""
    frame = shoppers(300, seed=1)
    frame["removes"] = 0.0
    traits = pd.concat([TRAITS, pd.DataFrame({"persona_key": ["owl"], "feature_name": ["removes"], "weight": [1.0]})])
    settings = model_params.FitSettings(k_max=8, scan_sample_size=2000, scan_bootstraps=3, kmeans_n_init=4, min_events=1)
    model = training.fit_model(frame, feature_config([*FEATURES, "removes"]), PERSONAS, traits, settings, len(frame))
    assert model.structure.verdict == "clear"
    night_group = pd.Series(model.predict(frame)[frame["planted"] == 0]).mode()[0]
    persona = model.segments.set_index("segment_id").loc[night_group, "persona_key"]
    assert persona == "owl"
    assert naming.measured_features(model.traits) == set(FEATURES)
    # A trait on a measured feature still has to be met: night owls below the population at night do not fit.
    contrary = traits.assign(weight=np.where(traits["feature_name"].eq("night_share") & traits["persona_key"].eq("owl"),
                                             -1.0, traits["weight"]))
    renamed = naming.name_segments(model.traits, PERSONAS, contrary, kept={}, min_score=-10.0)
    assert renamed.set_index("segment_id").loc[night_group, "persona_key"] != "owl"


def test_correlation_pruning_keeps_the_first_of_each_redundant_group():
    correlation = pd.DataFrame(
        [[1, 0.95, 0.1], [0.95, 1, 0.2], [0.1, 0.2, 1]], index=list("abc"), columns=list("abc")
    )
    assert k_and_features.correlation_pruning(correlation, ["b", "a", "c"], 0.9) == {"b": None, "a": "b", "c": None}


def test_threshold_recommendation_and_rule_text():
    rows = [
        {"min_events": 2, "reliable_share": 0.40},
        {"min_events": 5, "reliable_share": 0.6304},
        {"min_events": 8, "reliable_share": 0.6296},
        {"min_events": 10, "reliable_share": 0.55},
    ]
    assert threshold.recommended_threshold(rows) == 5  # a tie at three decimals goes to the smaller n
    # Only a reliable n can be recommended; when none is, the curve recommends nothing.
    flagged = [dict(r, is_reliable=r["min_events"] >= 8) for r in rows]
    assert threshold.recommended_threshold(flagged) == 8
    assert threshold.recommended_threshold([dict(r, is_reliable=False) for r in rows]) is None
    text = assignment.rule_text([("a", ">", 1.0), ("b", "<=", 2.0), ("a", ">", 1.5), ("a", "<=", 4.0)])
    assert text == "1.5 < a <= 4 and b <= 2"


def test_subsampled_events_keep_n_events_of_each_shopper_with_their_sessions():
    events = pd.DataFrame(
        {
            "user_id": np.repeat([1, 2], [10, 3]),
            "event_time": pd.date_range("2019-11-01", periods=13, freq="h"),
            "user_session": [f"s{i // 4}" for i in range(13)],
        }
    )
    part = threshold.subsample_events(threshold.in_canonical_order(events), 4, seed=1, draws=2)
    # Draw r of shopper u is pseudo-shopper 2u + r: n events each (all of them when fewer).
    assert part.groupby("user_id").size().to_dict() == {2: 4, 3: 4, 4: 3, 5: 3}
    original = part.assign(user_id=part.user_id // 2)
    assert original.merge(events, on=["user_id", "event_time", "user_session"]).shape[0] == len(part)
    # Deterministic whatever order the events come in (once in canonical order).
    shuffled = events.sample(frac=1, random_state=3)
    assert part.equals(threshold.subsample_events(threshold.in_canonical_order(shuffled), 4, seed=1, draws=2))
    # The same rows as drawing by sorting the frame on (shopper, random key), draw after draw.
    rng = np.random.default_rng(1)
    drawn = []
    for draw in range(2):
        ranked = events.assign(key=rng.random(len(events))).sort_values(["user_id", "key"])
        ranked = ranked[ranked.groupby("user_id").cumcount() < 4].drop(columns="key")
        drawn.append(ranked.assign(user_id=ranked.user_id * 2 + draw))
    expected = pd.concat(drawn).sort_values(["user_id", "event_time"], kind="stable").reset_index(drop=True)
    assert part.equals(expected)


def test_seed_configuration_is_consistent():
    """Every persona trait is a configured feature; every model feature has words for portraits."""
    config = pd.read_csv(PROJECT / "seeds" / "segment_features.csv")
    traits = pd.read_csv(PROJECT / "seeds" / "segment_persona_traits.csv")
    personas = pd.read_csv(PROJECT / "seeds" / "segment_personas.csv")
    assert set(traits["feature_name"]) <= set(config["feature_name"])
    assert set(traits["persona_key"]) <= set(personas["persona_key"])
    in_model = config[config["in_model"]]
    assert in_model["label"].notna().all() and (in_model["label"].str.len() > 0).all()
    # Each planted archetype's persona is defined on model features only.
    for persona in ("window_shopper", "decisive_buyer", "cart_abandoner", "premium_researcher",
                    "bargain_hunter", "loyal_regular"):
        assert set(traits.loc[traits.persona_key == persona, "feature_name"]) <= set(in_model["feature_name"])


def test_cv_strata_spread_extreme_shoppers_and_keep_five_folds():
    labels = np.repeat([1, 2], [50, 50])
    extreme = np.zeros(100, bool)
    extreme[:10] = True  # 10 extreme shoppers in segment 1: enough for five folds
    extreme[50:52] = True  # 2 in segment 2: too few, stratified with their segment
    strata, folds = assignment.cv_strata(labels, extreme, 5)
    assert folds == 5 and len(set(strata)) == 3
    assert len(set(strata[:10])) == 1 and strata[0] != strata[10]
    assert strata[50] == strata[60]
    assert assignment.cv_strata(np.repeat([1, 2], [3, 50]), np.zeros(53, bool), 5)[1] == 3


def test_no_persona_without_structure_nor_when_a_defining_trait_is_missed():
    profiles = pd.DataFrame(
        [
            (1, "night_share", 1.8), (1, "sessions", 0.1),
            (2, "night_share", -0.3), (2, "sessions", 1.5),
            (3, "night_share", 1.6), (3, "sessions", 1.4),
        ],
        columns=["segment_id", "feature_name", "centroid_z"],
    )
    profiles["label"] = profiles["feature_name"].str.replace("_", " ")
    profiles["distinctive_rank"] = np.where(profiles["centroid_z"].abs() >= 0.5, 1.0, np.nan)
    two_traits = pd.concat([TRAITS, pd.DataFrame({"persona_key": ["owl"], "feature_name": ["sessions"],
                                                   "weight": [-1.0]})])
    # The owl persona now needs few visits too. Segment 1 scores 0.9 - 0.05 >= 0.5 but visits +0.1 SD
    # is not 0.25 SD below the population: a defining trait missed by the margin.
    named = naming.name_segments(profiles, PERSONAS, two_traits, kept={}, min_score=0.5).set_index("segment_id")
    assert named.loc[1, "persona_key"] == "descriptive"  # a defining trait missed by the margin
    assert named.loc[2, "persona_key"] == "regular"
    # The verdict `none` removes every persona, and names stay unique within the version.
    flat = naming.name_segments(profiles, PERSONAS, TRAITS, kept={2: "regular"}, min_score=0.5, verdict="none")
    assert set(flat["persona_key"]) == {"descriptive"} and flat["segment_name"].is_unique
    assert not flat["segment_name"].str.startswith("Segment").any()
    assert set(flat["segment_name"]) == {"Night-time shoppers (sessions +0.1 SD)", "Frequent visitors",
                                         "Night-time shoppers (sessions +1.4 SD)"}


def test_the_k_selection_analysis_reads_the_stored_scan_as_a_recompute_would_give_it(first):
    """The fit stores its k scan (`k_scan` rows); segment_k_selection reads it instead of scanning again.
    Read back, it is the table a fresh scan on the same sample with the same seeds gives."""
    from shopper_segments.model.analyses.study import StudyInputs

    frame, _, params = first
    assert (params["param_group"] == "k_scan").any()
    study = StudyInputs(
        event_counts=lambda: frame[["user_id", "events"]],
        fetch_features=lambda ids: frame[frame["user_id"].isin(ids)].sort_values("user_id").reset_index(drop=True),
        feature_config=feature_config(),
    )
    stored = k_and_features.k_selection(params, [], study)
    recomputed = k_and_features.k_selection(params[params["param_group"] != "k_scan"], [], study)
    assert len(stored) == 7 and stored["is_chosen"].sum() == 1  # k = 2..8
    pd.testing.assert_frame_equal(stored, recomputed)
