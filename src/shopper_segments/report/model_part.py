"""The report's method sections: the verdict on structure, features, threshold, preprocessing, k, quality.

Also why no model is fitted, when none is: the note every model and segment section then carries.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from .format import PALETTE, esc, figure_html, is_missing, num, pct, table
from .warehouse import Unavailable, Warehouse, latest

STRUCTURE_TEXT = {
    "clear": ("Clear structure", "the segments separate shoppers clearly better than the same data with its "
              "structure removed: they are distinct groups."),
    "weak": ("Weak structure", "the segments separate shoppers only a little better than the same data with its "
             "structure removed: treat them as tendencies and test a campaign on a sample before targeting."),
    "none": ("No structure: the shoppers form a continuum", "the segments separate shoppers no better than the same "
             "data with its structure removed. They are a convenience partition of a continuum, not distinct "
             "groups: no segment is named after a persona; do not target them as if they were different "
             "kinds of shoppers."),
}


def structure_verdict(w: Warehouse) -> str:
    """The first thing a reader must know: are there segments at all? (docs/model.md)"""
    summary = w.rows("select model_version, structure_verdict from segment_summary limit 1", "segment_summary",
                     what="segments")
    verdict = summary["structure_verdict"].iloc[0]
    if is_missing(verdict):
        raise Unavailable("this model version was fitted before verdicts on structure existed")
    version = int(summary["model_version"].iloc[0])
    figures = {}
    if "segment_model_metrics" in w.tables:
        rows = w.frame("select metric_name, metric_value from segment_model_metrics "
                       f"where model_version = {version} and metric_name like 'structure_%'")
        figures = dict(zip(rows["metric_name"], rows["metric_value"]))
    title, text = STRUCTURE_TEXT[verdict]
    detail = ""
    if figures:
        detail = (f" Silhouette {num(figures['structure_observed_silhouette'], 3)} against "
                  f"{num(figures['structure_null_silhouette'], 3)} for the null reference (each principal "
                  f"component permuted independently), over {num(figures['structure_bootstraps'])} bootstraps.")
    return (f'<div class="verdict verdict-{esc(verdict)}" id="structure-verdict"><b>{esc(title)}</b> '
            f"(model version {version}, verdict <code>{esc(verdict)}</code>): {esc(text)}{esc(detail)}</div>")


def features_used(w: Warehouse) -> str:
    if "segment_feature_analysis" in w.tables:
        frame = w.rows(
            "select feature_name as feature, family, importance_rank as rank, permutation_importance, "
            "separation_eta_squared as separation, most_correlated_feature, max_abs_correlation "
            f"from segment_feature_analysis where in_model and model_version = {latest('segment_feature_analysis')} "
            "order by importance_rank, feature_name",
            "segment_feature_analysis", what="feature analysis",
        )
        dropped = w.frame(
            "select count(*) as n from segment_feature_analysis "
            f"where not in_model and model_version = {latest('segment_feature_analysis')}"
        ).iloc[0]["n"]
        three = lambda v: num(v, 3)  # noqa: E731
        return (
            f"<p>{len(frame)} behavioural features feed the model ({num(dropped)} other candidates are left out: "
            "lifecycle and raw volumes, or redundant with a kept feature). Ranked by permutation importance "
            "(how much a classifier's accuracy drops when the feature is shuffled); separation is the share of "
            "the feature's variance explained by the segments (eta²).</p>"
            + table(frame, {"permutation_importance": three, "separation": three, "max_abs_correlation": three})
        )
    features = w.rows(
        "select distinct feature_name as feature from segment_traits "
        f"where model_version = {latest('segment_traits')} order by feature_name",
        "segment_traits", what="model features",
    )
    return f"<p>{len(features)} behavioural features feed the model: {esc(', '.join(features['feature']))}.</p>"


def threshold(w: Warehouse) -> str:
    curve = w.rows(
        "select min_events, users_evaluated, agreement, shoppers_reaching, reliable_share, is_reliable, is_recommended, "
        f"is_current_setting from segment_threshold_curve where model_version = {latest('segment_threshold_curve')} "
        "order by min_events",
        "segment_threshold_curve", what="threshold curve",
    )
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.plot(curve["min_events"], curve["agreement"], marker="o", label="segment agreement with full history")
    ax.plot(curve["min_events"], curve["shoppers_reaching"], marker="s", label="shoppers reaching the threshold")
    ax.plot(curve["min_events"], curve["reliable_share"], marker="^", label="reliably segmented shoppers")
    current = curve[curve["is_current_setting"].astype(bool)]
    for value in current["min_events"]:
        ax.axvline(value, color="grey", linestyle="--")
        ax.text(value, 0.02, " current setting", fontsize=8, color="grey")
    ax.set_xlabel("minimum events before a shopper is segmented")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    recommended = curve[curve["is_recommended"].astype(bool)]["min_events"].tolist()
    if recommended:
        best = f"The measured best trade-off is {', '.join(str(int(v)) for v in recommended)} events"
    else:
        best = ("No number of events gives a reliable assignment: fewer than 7 shoppers in 10 keep their "
                "segment at every threshold measured, so segments of individual shoppers should not be acted on")
    text = (f"A shopper is segmented once they have enough events. With few events the segment is unreliable; "
            f"with a high threshold few shoppers qualify. {best}; the current setting is "
            f"{', '.join(str(int(v)) for v in current['min_events']) or 'outside the curve'}.")
    return f"<p>{esc(text)}</p>" + figure_html(fig, "Minimum-events threshold curve")


def preprocessing(w: Warehouse) -> str:
    w.need("segment_pca_components")
    steps = (
        "<ol><li>Missing (undefined) features imputed (training median or a fixed value, per feature).</li>"
        "<li>Counts and amounts compressed with log(1 + x); every feature clipped to its 1st–99th training "
        "percentiles.</li><li>Standardised (mean 0, standard deviation 1).</li>"
        "<li>PCA: the fewest principal components that keep the configured share of the variance.</li>"
        "<li>KMeans on the components; every shopper is then scored in SQL by the warehouse.</li></ol>"
    )
    pca = w.rows(
        "select component, explained_variance_ratio, cumulative_explained_variance, is_kept "
        f"from segment_pca_components where model_version = {latest('segment_pca_components')} order by component",
        "segment_pca_components", what="principal components",
    )
    kept = pca[pca["is_kept"].astype(bool)]
    fig, ax = plt.subplots(figsize=(7, 2.6))
    colours = [PALETTE[0] if k else "lightgrey" for k in pca["is_kept"].astype(bool)]
    ax.bar(pca["component"], pca["explained_variance_ratio"], color=colours, label="explained by the component")
    ax.plot(pca["component"], pca["cumulative_explained_variance"], color=PALETTE[3], marker="o", label="cumulative")
    ax.set_xlabel("principal component (blue: kept)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    text = (f"{len(kept)} of {len(pca)} components kept, explaining "
            f"{pct(kept['cumulative_explained_variance'].max())} of the variance of the scaled features.")
    return steps + f"<p>{esc(text)}</p>" + figure_html(fig, "Explained variance of the principal components")


def k_selection(w: Warehouse) -> str:
    scan = w.rows(
        "select k, inertia, silhouette, null_silhouette, stability_ari, is_stable, is_elbow, is_chosen, reason "
        f"from segment_k_selection where model_version = {latest('segment_k_selection')} order by k",
        "segment_k_selection", what="k scan",
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    left.plot(scan["k"], scan["inertia"], marker="o", color=PALETTE[0])
    left.set_title("Elbow: inertia", fontsize=10)
    right.plot(scan["k"], scan["silhouette"], marker="o", color=PALETTE[2], label="silhouette")
    right.plot(scan["k"], scan["null_silhouette"], marker="o", color=PALETTE[2], linestyle=":",
               label="silhouette, structure removed")  # k is chosen on the excess of the first over this one
    right.plot(scan["k"], scan["stability_ari"], marker="s", color=PALETTE[4], label="bootstrap stability")
    right.set_title("Silhouette (with its null) and stability", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        for k in scan.loc[scan["is_chosen"].astype(bool), "k"]:
            ax.axvline(k, color="grey", linestyle="--")
        ax.set_xlabel("number of segments k")
        ax.grid(alpha=0.3)
    reason = scan.loc[scan["is_chosen"].astype(bool), "reason"].dropna()
    text = reason.iloc[0] if len(reason) else "The number of segments was fixed by configuration."
    return f"<p>{esc(text)}</p>" + figure_html(fig, "k selection: elbow, silhouette against its null, stability")


def model_metrics(w: Warehouse) -> str:
    metrics = w.rows(
        "select metric_name, metric_value from segment_model_metrics "
        f"where segment_id is null and component is null and model_version = {latest('segment_model_metrics')} "
        "order by metric_name",
        "segment_model_metrics", what="model metrics",
    )
    meaning = {
        "silhouette": "separation of the segments, -1..1, higher is better",
        "davies_bouldin": "lower is better",
        "calinski_harabasz": "higher is better",
        "inertia": "KMeans sum of squared distances",
        "explained_variance_total": "variance kept by the principal components",
        "pca_components": "principal components kept",
        "n_segments": "segments (k)",
        "training_users": "shoppers the model was fitted on",
        "eligible_users": "shoppers with enough events at fit time",
    }
    metrics["meaning"] = metrics["metric_name"].map(meaning).fillna("")
    return table(metrics, {"metric_value": lambda v: num(v, 3) if abs(v) < 100 else num(v)})


def cross_validation(w: Warehouse) -> str:
    summary = w.rows(
        "select classifier, folds, accuracy_mean, accuracy_std, macro_f1_mean, macro_f1_std, extreme_accuracy_mean "
        f"from segment_classifier_summary where model_version = {latest('segment_classifier_summary')} "
        "order by classifier",
        "segment_classifier_summary", what="cross-validation results",
    )
    three = lambda v: num(v, 3)  # noqa: E731
    return (
        "<p>Can the segments be learnt back from the features? Stratified k-fold cross-validation of three "
        "supervised models predicting each held-out shopper's segment: high accuracy means the segments are "
        "well defined, not artefacts of the clustering.</p>"
        + table(summary, {c: three for c in summary.columns if c not in ("classifier", "folds")})
    )


def method_comparison(w: Warehouse) -> str:
    rows = w.rows(
        "select comparison, variant, is_production, metric_name, metric_value from segment_method_comparison "
        f"where population = 'all' and model_version = {latest('segment_method_comparison')}",
        "segment_method_comparison", what="method comparison",
    )
    wide = rows.pivot_table(index=["comparison", "variant", "is_production"], columns="metric_name",
                            values="metric_value", aggfunc="first").reset_index()
    wide.columns.name = None
    wide["is_production"] = wide["is_production"].map(lambda v: "production" if v else "")
    wanted = ["silhouette", "davies_bouldin", "stability_ari", "ari_vs_production", "smallest_segment_share"]
    wide = wide[["comparison", "variant", "is_production", *[c for c in wanted if c in wide.columns]]]
    return (
        "<p>The production method (KMeans on log-scaled, clipped, standardised features reduced by PCA) against "
        "alternatives, on the same sample: other algorithms, feature sets and preprocessing.</p>"
        + table(wide, {c: (lambda v: num(v, 3)) for c in wanted})
    )


def no_model_reason(w: Warehouse) -> str | None:
    """Why no model version is fitted (too few eligible shoppers), or None when one is.

    The fit's settings are the project's (dbt_project.yml): a run with other `--vars` is not known here.
    """
    from ..model import fit
    from ..model import params as modeling

    if not {"segment_model", "user_features"} <= w.tables or not w.frame("select 1 from segment_model limit 1").empty:
        return None
    meta = fit.python_model_config("segment_model", w.target, {}).get("meta")
    fit_settings = modeling.FitSettings.from_model_meta(meta)
    counts = w.frame(f"select count(*) as shoppers, sum(case when events >= {fit_settings.min_events} then 1 else 0 end) "
                     "as eligible from user_features")
    shoppers, eligible = int(counts["shoppers"].iloc[0]), int(counts["eligible"].fillna(0).iloc[0])
    shortfall = modeling.too_few_to_fit(eligible, fit_settings)
    return (f"No segment model is fitted: {shortfall or 'the fit has not run yet'} (settings of dbt_project.yml), "
            f"so all {shoppers:,} shoppers are not_enough_history. Lower min_events or land more events.")
