"""The report's segment sections: overview, PCA scatter, profile heatmap, funnel and one card per segment."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from markupsafe import Markup

from .format import PALETTE, figure_html, is_missing, note, num, pct, render_template, table
from .warehouse import Unavailable, Warehouse, latest

WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]  # extract(dow): 0 = Sunday


def segment_order(w: Warehouse) -> pd.DataFrame:
    """The current segments, from segment_summary (else segment_profiles), largest first."""
    if "segment_summary" in w.tables:
        return w.rows(
            "select segment_id, segment_name, persona_key, description, distinctive_traits, marketing_action, "
            "users, user_share, buyers, conversion_rate, orders, revenue, revenue_share, avg_order_value, "
            "revenue_per_user, model_version from segment_summary order by users desc, segment_id",
            "segment_summary", what="segments",
        )
    return w.rows(
        "select segment_id, segment_name, persona_key, description, distinctive_traits, marketing_action, "
        "users, user_share, model_version from segment_profiles order by users desc, segment_id",
        "segment_profiles", what="segments",
    )


def segment_colours(segments: pd.DataFrame) -> dict[int, tuple]:
    return {int(s): PALETTE[i % len(PALETTE)] for i, s in enumerate(sorted(segments["segment_id"]))}


def segments_overview(w: Warehouse, segments: pd.DataFrame) -> str:
    columns = {"segment_id": "id", "segment_name": "segment", "users": "shoppers", "user_share": "share",
               "conversion_rate": "conversion", "revenue_share": "revenue share", "avg_order_value": "AOV"}
    frame = segments[[c for c in columns if c in segments.columns]].rename(columns=columns)
    return table(frame, {"shoppers": num, "share": pct, "conversion": pct, "revenue share": pct,
                         "AOV": lambda v: num(v, 2)})


def pca_scatter(w: Warehouse, segments: pd.DataFrame, sample: int) -> str:
    from ..model.params import StoredModel

    w.need("segment_model", "user_segments", "user_features")
    params = w.rows(f"select * from segment_model where model_version = {latest('segment_model')}",
                    "segment_model", what="fitted model")
    model = StoredModel.from_params(params)
    if model is None or model.loadings.shape[0] < 2:
        raise Unavailable("the model has fewer than two principal components")
    columns = ", ".join(f"f.{name}" for name in model.features)
    # A deterministic, bounded sample of scored shoppers, projected with the model's own parameters.
    shoppers = w.rows(
        f"select s.segment_id, {columns} from user_segments as s inner join user_features as f "
        f"on s.user_id = f.user_id where s.segment_status = 'scored' "
        f"order by mod(s.user_id, 9973), s.user_id limit {int(sample)}",
        "user_segments", what="scored shoppers",
    )
    projected = model.project(shoppers)
    colours = segment_colours(segments)
    names = dict(zip(segments["segment_id"].astype(int), segments["segment_name"]))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for segment_id, group in shoppers.groupby("segment_id"):
        points = projected[group.index.to_numpy()]
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.45, color=colours.get(int(segment_id), "grey"),
                   label=names.get(int(segment_id), f"Segment {segment_id}"))
    for segment_id, centroid in zip(model.segment_ids, model.centroids):
        ax.scatter(centroid[0], centroid[1], marker="X", s=120, color=colours.get(int(segment_id), "black"),
                   edgecolor="black")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.legend(fontsize=8, markerscale=2.5, loc="best")
    ax.grid(alpha=0.3)
    return (f"<p>{len(shoppers):,} scored shoppers (a fixed sample) on the first two principal components; "
            "crosses mark the segment centres. Segments overlap here because the model separates them in "
            f"{model.loadings.shape[0]} dimensions.</p>" + figure_html(fig, "PCA scatter of scored shoppers"))


def traits_frame(w: Warehouse) -> pd.DataFrame:
    return w.rows(
        "select segment_id, feature_name, centroid_z, centroid_value, population_value, distinctive_rank "
        f"from segment_traits where model_version = {latest('segment_traits')}",
        "segment_traits", what="segment traits",
    )


def profile_heatmap(traits: pd.DataFrame, segments: pd.DataFrame) -> str:
    grid = traits.pivot_table(index="segment_id", columns="feature_name", values="centroid_z")
    order = [s for s in segments["segment_id"].astype(int) if s in grid.index]
    grid = grid.reindex(order)
    grid = grid[grid.abs().max().sort_values(ascending=False).index]
    names = dict(zip(segments["segment_id"].astype(int), segments["segment_name"]))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * grid.shape[1] + 2), 0.5 * len(grid) + 2))
    image = ax.imshow(grid.clip(-2, 2).to_numpy(), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_yticks(range(len(grid)), [names.get(s, str(s)) for s in grid.index])
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", fontsize=8)
    fig.colorbar(image, ax=ax, label="centroid z-score (SD from the average shopper)", shrink=0.8)
    return ("<p>Each segment's centre on every model feature, in standard deviations from the average shopper "
            "(red above, blue below).</p>" + figure_html(fig, "Segment profile heatmap"))


def segment_journeys(w: Warehouse) -> pd.DataFrame:
    """Per segment: shoppers who viewed, carted, purchased (user level), and their habits."""
    return w.rows(
        "select s.segment_id, count(*) as users, "
        "sum(case when f.views > 0 then 1 else 0 end) as viewed, "
        "sum(case when f.carts > 0 then 1 else 0 end) as carted, "
        "sum(case when f.purchases > 0 then 1 else 0 end) as purchased, "
        "avg(cast(f.sessions as double precision)) as sessions, "
        "avg(f.events_per_session) as events_per_session, "
        "avg(f.avg_session_duration_seconds) as session_seconds, "
        "avg(f.cart_abandonment_rate) as cart_abandonment "
        "from user_segments as s inner join user_features as f on s.user_id = f.user_id "
        "where s.segment_status = 'scored' group by s.segment_id",
        "user_segments", "user_features", what="scored shoppers",
    ).set_index("segment_id")


def funnel_per_segment(journeys: pd.DataFrame, segments: pd.DataFrame) -> str:
    order = [s for s in segments["segment_id"].astype(int) if s in journeys.index]
    names = dict(zip(segments["segment_id"].astype(int), segments["segment_name"]))
    frame = journeys.reindex(order)
    steps = ["viewed", "carted", "purchased"]
    shares = frame[steps].div(frame["users"], axis=0)
    fig, ax = plt.subplots(figsize=(9, 3))
    width = 0.8 / len(steps)
    x = np.arange(len(frame))
    for i, step in enumerate(steps):
        ax.bar(x + (i - 1) * width, shares[step], width=width, label=step, color=[PALETTE[0], PALETTE[1], PALETTE[2]][i])
    ax.set_xticks(x, [names.get(s, str(s)) for s in frame.index], fontsize=8, rotation=15)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_ylabel("share of the segment's shoppers")
    ax.set_ylim(0, 1.18)
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    return figure_html(fig, "Funnel per segment")


def segment_timing(w: Warehouse) -> dict[int, str]:
    """Per segment: its busiest weekday and hour (UTC) of activity, for timing campaigns."""
    w.need("stg_events", "user_segments")
    join = ("from stg_events as e inner join user_segments as s on e.user_id = s.user_id "
            "where s.segment_status = 'scored'")
    hours = w.frame(f"select s.segment_id, extract(hour from e.event_time) as slot, count(*) as events {join} "
                    "group by s.segment_id, extract(hour from e.event_time)")
    days = w.frame(f"select s.segment_id, extract(dow from e.event_time) as slot, count(*) as events {join} "
                   "group by s.segment_id, extract(dow from e.event_time)")
    timing = {}
    for segment_id in set(hours["segment_id"]):
        h = hours[hours["segment_id"] == segment_id].sort_values(["events", "slot"], ascending=[False, True])
        d = days[days["segment_id"] == segment_id].sort_values(["events", "slot"], ascending=[False, True])
        hour, day = int(h.iloc[0]["slot"]), WEEKDAYS[int(d.iloc[0]["slot"])]
        timing[int(segment_id)] = (f"most active on {day}s and around {hour:02d}:00 UTC: schedule sends shortly "
                                   f"before (e.g. {day} {max(hour - 1, 0):02d}:00 UTC)")
    return timing


def segment_rules(w: Warehouse) -> pd.DataFrame:
    if "segment_rules" not in w.tables:
        return pd.DataFrame(columns=["segment_id", "rule_text", "precision", "coverage"])
    return w.frame(
        "select segment_id, rule_number, rule_text, users, precision, coverage from segment_rules "
        f"where model_version = {latest('segment_rules')} order by segment_id, coverage desc, rule_number"
    )


def zscore_chart(traits: pd.DataFrame, segment_id: int, colour) -> str:
    rows = traits[traits["segment_id"] == segment_id].copy()
    if rows.empty:
        return note("Not available: no traits for this segment.")
    rows = rows.reindex(rows["centroid_z"].abs().sort_values(ascending=False).index).head(10)[::-1]
    fig, ax = plt.subplots(figsize=(5.2, 0.28 * len(rows) + 0.9))
    ax.barh(rows["feature_name"], rows["centroid_z"],
            color=[colour if z >= 0 else "lightslategrey" for z in rows["centroid_z"]])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("centroid z-score (SD from the average shopper)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return figure_html(fig, f"Distinguishing features of segment {segment_id}")


def segment_card(segment: pd.Series, traits: pd.DataFrame | None, journeys: pd.DataFrame | None,
                 rules: pd.DataFrame, timing: dict[int, str], colour) -> Markup:
    """One segment's card (templates/segment_card.html.j2): facts, portrait, journey, rules, chart, actions."""
    sid = int(segment["segment_id"])
    facts = [("shoppers", num(segment["users"])), ("share of shoppers", pct(segment["user_share"]))]
    if "revenue_share" in segment:
        facts += [("share of revenue", pct(segment["revenue_share"])), ("buy (conversion)", pct(segment["conversion_rate"])),
                  ("average order value", num(segment["avg_order_value"], 2))]
    journey = None
    if journeys is not None and sid in journeys.index:
        j = journeys.loc[sid]
        users = max(float(j["users"]), 1)
        journey = {"viewed": pct(j["viewed"] / users), "carted": pct(j["carted"] / users),
                   "purchased": pct(j["purchased"] / users), "sessions": num(j["sessions"], 1),
                   "events_per_session": num(j["events_per_session"], 1),
                   "minutes": num(j["session_seconds"] / 60, 1), "cart_abandonment": pct(j["cart_abandonment"])}
    own_rules = [{"text": r.rule_text, "precision": pct(r.precision, 0), "coverage": pct(r.coverage, 0)}
                 for r in rules[rules["segment_id"] == sid].head(3).itertuples()]
    priority = None
    if "revenue_share" in segment and not is_missing(segment["revenue_share"]) and segment["user_share"]:
        ratio = segment["revenue_share"] / segment["user_share"]
        advice = "protect and grow this value" if ratio >= 1 else "convert them at low cost"
        priority = {"user_share": pct(segment["user_share"]), "revenue_share": pct(segment["revenue_share"]),
                    "ratio": f"{ratio:.2f}", "advice": advice}
    chart = Markup(zscore_chart(traits, sid, colour)) if traits is not None else None
    return render_template(
        "segment_card.html.j2", segment_id=sid, name=segment["segment_name"], colour=matplotlib.colors.to_hex(colour),
        facts=facts, description=segment["description"], traits=segment["distinctive_traits"], journey=journey,
        rules=own_rules, chart=chart, marketing_action=segment["marketing_action"], timing=timing.get(sid),
        priority=priority,
    )


def segment_cards(w: Warehouse, segments: pd.DataFrame) -> str:
    def optional(build):
        try:
            return build()
        except Unavailable:
            return None

    traits = optional(lambda: traits_frame(w))
    journeys = optional(lambda: segment_journeys(w))
    timing = optional(lambda: segment_timing(w)) or {}
    rules = segment_rules(w)
    colours = segment_colours(segments)
    return "\n".join(
        segment_card(row, traits, journeys, rules, timing, colours[int(row["segment_id"])])
        for _, row in segments.iterrows()
    )
