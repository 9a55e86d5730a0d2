"""Print the figures docs/model.md quotes, from a built warehouse (read-only).

    python -m shopper_segments.model.model_report --duckdb warehouse/shopper_segments.duckdb \
        [--truth data/events/demo/truth/user_archetypes.csv]

With `--truth` (the planted archetypes of generated data) it also prints the adjusted Rand index
of the current segments against them and which segment each archetype landed in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb
import pandas as pd
from sklearn.metrics import adjusted_rand_score


def _section(title: str, frame: pd.DataFrame | str) -> None:
    print(f"\n== {title}")
    print(frame if isinstance(frame, str) else frame.to_string(index=False))


def report(duckdb_path: Path, truth: Path | None = None) -> None:
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        q = lambda sql: con.sql(sql).df()  # noqa: E731
        version = con.sql("select max(model_version) from segment_model").fetchall()[0][0]
        if version is None:
            shoppers = con.sql("select count(*) from user_segments").fetchall()[0][0]
            _section("no model version", f"No segment model is fitted: too few shoppers have min_events events "
                                         f"(the run printed how many are eligible and needed); all {shoppers:,} "
                                         "shoppers are not_enough_history.")
            return
        where = f"where model_version = {version}"
        _section(f"model version {version}: k selection",
                 q(f"select k, round(silhouette, 3) as silhouette, round(null_silhouette, 3) as null_silhouette, "
                   f"round(silhouette_excess, 3) as excess, round(davies_bouldin, 3) as db, "
                   f"round(calinski_harabasz) as ch, round(stability_ari, 3) as stability, is_stable, is_elbow, "
                   f"is_chosen from segment_k_selection {where} order by k"))
        _section("reason", con.sql(f"select reason from segment_k_selection {where} and is_chosen").fetchall()[0][0])
        _section("verdict on structure (docs/model.md, 'Is there structure?')",
                 q(f"select text_value as verdict, round(value, 3) as silhouette_excess from segment_model "
                   f"{where} and param_group = 'structure' and param_name = 'verdict'"))
        _section("principal components",
                 q(f"select count(*) filter (where is_kept) as kept, count(*) as components, "
                   f"round(max(cumulative_explained_variance) filter (where is_kept), 3) as explained "
                   f"from segment_pca_components {where}"))
        _section("segments", q("select segment_id, segment_name, users, round(user_share, 3) as share, "
                               "distinctive_traits from segment_profiles order by segment_id"))
        if truth is not None:
            planted = pd.read_csv(truth)
            scored = q("select user_id, segment_id, segment_name from user_segments where segment_status = 'scored'")
            both = scored.merge(planted, on="user_id")
            _section(f"adjusted Rand index against the planted archetypes ({len(both):,} scored shoppers)",
                     f"{adjusted_rand_score(both['archetype'], both['segment_id']):.3f}")
            _section("archetype x segment", pd.crosstab(both["archetype"], both["segment_name"]).reset_index())
        _section("minimum-events threshold curve",
                 q(f"select min_events, users_evaluated, round(agreement, 3) as agreement, "
                   f"round(agreement_macro, 3) as macro, round(agreement_lowest_segment, 3) as lowest, "
                   f"round(shoppers_reaching, 3) as reaching, round(reliable_share, 4) as reliable_share, is_reliable, "
                   f"is_recommended, is_current_setting from segment_threshold_curve {where} order by min_events"))
        _section("supervised assignment, stratified 5-fold CV",
                 q(f"select classifier, round(accuracy_mean, 3) as accuracy, round(accuracy_std, 3) as accuracy_std, "
                   f"round(macro_f1_mean, 3) as macro_f1, round(macro_f1_std, 3) as macro_f1_std, "
                   f"round(extreme_accuracy_mean, 3) as extreme_accuracy from segment_classifier_summary {where}"))
        _section("alternatives (all shoppers of the comparison sample)",
                 q(f"pivot (select comparison, variant, metric_name, round(metric_value, 3) as v "
                   f"from segment_method_comparison {where} and population = 'all' and metric_name in "
                   f"('silhouette', 'davies_bouldin', 'stability_ari', 'ari_vs_production', 'smallest_segment_share')) "
                   f"on metric_name using first(v) order by comparison, variant"))
        _section("outlier handling without the extreme shoppers",
                 q(f"pivot (select variant, metric_name, round(metric_value, 3) as v from segment_method_comparison "
                   f"{where} and comparison = 'outliers' and population = 'without_extremes' and metric_name in "
                   f"('silhouette', 'ari_vs_production', 'smallest_segment_share')) on metric_name using first(v)"))
        _section("features (model features by importance)",
                 q(f"select feature_name, round(permutation_importance, 4) as importance, "
                   f"round(separation_eta_squared, 3) as eta2, most_correlated_feature, "
                   f"round(max_abs_correlation, 2) as rho, kept_by_pruning from segment_feature_analysis "
                   f"{where} and in_model order by importance_rank"))
        _section("rules (best rule of each segment)",
                 q(f"select segment_id, round(precision, 3) as precision, round(coverage, 3) as coverage, rule_text "
                   f"from segment_rules {where} and rule_number = 1 order by segment_id"))
        _section("retrainings", q("select * from segment_model_retrainings order by model_version"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duckdb", required=True, type=Path, help="the warehouse file")
    parser.add_argument("--truth", type=Path, help="user_id,archetype CSV of generated data")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 140)
    report(args.duckdb, args.truth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
