"""On generated data with planted archetypes (the shared demo warehouse: real dbt build, real fit),
the pipeline recovers the archetypes, chooses k = 6, names them after their personas, and every
analysis table is filled, consistent with the model and with the documented rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from shopper_segments.model import naming, params as model_params

ANALYSIS_TABLES = [
    "segment_k_selection",
    "segment_feature_analysis",
    "segment_method_comparison",
    "segment_threshold_curve",
    "segment_classifier_cv",
    "segment_classifier_summary",
    "segment_rules",
    "segment_pca_components",
    "segment_pca_loadings",
    "segment_traits",
    "segment_labels",
    "user_segment_history",
]


@pytest.fixture(scope="module")
def scored(demo_warehouse, demo_events) -> pd.DataFrame:
    truth = pd.read_csv(demo_events.truth_file)
    segments = demo_warehouse.df("select user_id, segment_id, segment_name from user_segments where segment_status = 'scored'")
    return segments.merge(truth, on="user_id")


@pytest.mark.parametrize("warehouse_name", ["real_warehouse", "demo_warehouse"])
def test_every_analysis_table_is_filled(request, warehouse_name):
    warehouse = request.getfixturevalue(warehouse_name)
    for table in ANALYSIS_TABLES:
        assert warehouse.scalar(f"select count(*) from {table}") > 0, f"{table} is empty"
    version = warehouse.scalar("select max(model_version) from segment_model")
    for table in ANALYSIS_TABLES[:7]:
        assert warehouse.scalar(f"select max(model_version) from {table}") == version, table


def test_planted_archetypes_are_recovered(scored):
    assert len(scored) > 1500
    assert adjusted_rand_score(scored["archetype"], scored["segment_id"]) >= 0.8


def test_each_archetype_is_named_after_its_persona(scored, demo_warehouse):
    majority = pd.crosstab(scored["archetype"], scored["segment_id"]).idxmax(axis=1)
    labels = demo_warehouse.df("select * from segment_labels where model_version = 1").set_index("segment_id")
    assert (majority.map(labels["persona_key"]) == majority.index).all(), majority.map(labels["persona_key"])
    assert majority.is_unique


def test_k_selection_records_the_choice_of_the_model(demo_warehouse):
    scan = demo_warehouse.df("select * from segment_k_selection order by k")
    chosen = scan[scan.is_chosen]
    assert list(chosen.k) == [demo_warehouse.scalar("select count(*) from segment_labels")] == [6]
    assert list(scan.k) == list(range(2, 13))
    row = chosen.iloc[0]
    assert row.is_stable and row.reason.startswith("k=6")
    # The rule, checked on the table: among the stable k whose silhouette excess over the null is
    # within 0.02 of the largest, those within 0.02 of the highest stability, then the largest excess.
    assert np.allclose(scan.silhouette_excess, scan.silhouette - scan.null_silhouette)
    stable = scan[scan.is_stable]
    tied = stable[stable.silhouette_excess >= stable.silhouette_excess.max() - 0.02]
    steady = tied[tied.stability_ari >= tied.stability_ari.max() - 0.02]
    assert row.silhouette_excess == steady.silhouette_excess.max()
    assert scan.sample_users.iloc[0] == min(5000, demo_warehouse.scalar(
        "select metric_value from segment_model_metrics where metric_name = 'training_users'"))


def test_names_follow_the_documented_rules_from_the_stored_traits(demo_warehouse):
    """Recompute every persona from segment_traits and the seeds: the stored names must agree."""
    traits = demo_warehouse.df("select * from segment_traits where model_version = 1")
    personas = demo_warehouse.df("select * from segment_personas")
    weights = demo_warehouse.df("select * from segment_persona_traits")
    scores = naming.persona_scores(traits, personas, weights)
    rows, cols = linear_sum_assignment(-scores.to_numpy())
    expected = {scores.index[r]: scores.columns[c] for r, c in zip(rows, cols) if scores.iloc[r, c] >= 0.5}
    labels = demo_warehouse.df("select segment_id, persona_key, distinctive_traits from segment_labels")
    assert dict(zip(labels.segment_id, labels.persona_key)) == expected
    # The portrait lists the strongest distinctive features of the centroid.
    for segment_id, text in zip(labels.segment_id, labels.distinctive_traits):
        top = traits[(traits.segment_id == segment_id) & (traits.distinctive_rank == 1)]
        assert len(top) == 1 and f"({top.centroid_z.iloc[0]:+.1f} SD)" in text.split(";")[0]


def test_traits_are_the_stored_centroids(demo_warehouse):
    params = demo_warehouse.df("select * from segment_model")
    stored = model_params.StoredModel.from_params(params)
    traits = demo_warehouse.df("select * from segment_traits where model_version = 1")
    z = stored.centroids @ stored.loadings + stored.pca_mean  # centroids in standardised features
    pivot = traits.pivot(index="segment_id", columns="feature_name", values="centroid_z").loc[
        stored.segment_ids, stored.features
    ]
    np.testing.assert_allclose(pivot.to_numpy(), z, atol=1e-9)


def test_supervised_assignment_is_learnable_and_cross_validated(demo_warehouse):
    folds = demo_warehouse.df("select * from segment_classifier_cv")
    assert set(folds.classifier) == {"knn", "decision_tree", "svm"}
    assert (folds.groupby("classifier").fold.nunique() == 5).all()
    summary = demo_warehouse.df("select * from segment_classifier_summary").set_index("classifier")
    assert (summary.accuracy_mean > 0.85).all() and (summary.macro_f1_mean > 0.85).all()
    assert (summary.accuracy_std < 0.05).all()
    # Every held-out shopper is counted once per classifier; folds get their share of extreme shoppers.
    assert summary.users.nunique() == 1
    per_fold = folds[folds.classifier == "svm"]
    share = per_fold.extreme_test_users / per_fold.test_users
    assert share.max() - share.min() < 0.02


def test_rules_describe_each_segment_precisely(demo_warehouse):
    rules = demo_warehouse.df("select * from segment_rules")
    segments = set(demo_warehouse.df("select segment_id from segment_labels").segment_id)
    assert set(rules.segment_id) == segments
    best = rules[rules.rule_number == 1].set_index("segment_id")
    assert (best.precision > 0.7).all()
    assert rules.groupby("segment_id").coverage.sum().min() > 0.8
    assert best.rule_text.str.contains(" and |<=|>").all()


def test_threshold_curve_recommends_the_documented_default(demo_warehouse):
    curve = demo_warehouse.df("select * from segment_threshold_curve order by min_events")
    assert curve.is_recommended.sum() == 1 and curve.is_current_setting.sum() == 1
    # More history, more agreement (allowing sampling noise); fewer shoppers reach it.
    assert curve.agreement.iloc[-1] > curve.agreement.iloc[0] + 0.2
    assert curve.shoppers_reaching.is_monotonic_decreasing
    recommended = curve[curve.is_recommended].iloc[0]
    assert recommended.reliable_share == curve.reliable_share.round(3).max() or np.isclose(
        round(recommended.reliable_share, 3), curve.reliable_share.round(3).max()
    )
    assert 5 <= recommended.min_events <= 12


def test_method_comparison_covers_algorithms_feature_sets_and_outliers(demo_warehouse):
    table = demo_warehouse.df("select * from segment_method_comparison")
    variants = table.groupby("comparison").variant.unique().map(set).to_dict()
    assert variants["algorithm"] == {"kmeans", "minibatch_kmeans", "gaussian_mixture", "agglomerative_ward"}
    assert variants["feature_set"] == {"configured", "all_candidates", "correlation_pruned"}
    assert variants["outliers"] == {"log_winsorise_standard", "raw_standard", "log_standard", "log_winsorise_robust"}
    metric = table.set_index(["comparison", "variant", "population", "metric_name"]).metric_value
    assert metric["algorithm", "kmeans", "all", "ari_vs_production"] == 1.0
    assert metric["algorithm", "kmeans", "all", "stability_ari"] > 0.9
    assert set(table.population) == {"all", "without_extremes"}
    features = demo_warehouse.df("select * from segment_feature_analysis")
    assert features.in_model.sum() == metric["feature_set", "configured", "all", "features"]
    assert (features.loc[features.in_model, "permutation_importance"].notna()).all()
