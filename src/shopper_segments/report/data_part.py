"""The report's data sections: key figures and what shoppers did (events, funnel, prices, categories, gaps)."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .format import PALETTE, esc, figure_html, note, num, pct, table
from .warehouse import Unavailable, Warehouse

EVENT_TYPES = ["view", "cart", "remove_from_cart", "purchase"]


def key_figures(w: Warehouse) -> str:
    events = w.rows(
        "select count(*) as events, count(distinct user_id) as shoppers, count(distinct user_session) as sessions, "
        "min(event_time) as first_event, max(event_time) as last_event from stg_events",
        "stg_events", what="events",
    ).iloc[0]
    if events["events"] == 0:
        raise Unavailable("no events yet")
    items = [
        ("events", num(events["events"])),
        ("shoppers", num(events["shoppers"])),
        ("sessions", num(events["sessions"])),
        ("period", f"{pd.Timestamp(events['first_event']):%Y-%m-%d} to {pd.Timestamp(events['last_event']):%Y-%m-%d}"),
    ]
    if "user_segments" in w.tables:
        status = w.frame("select segment_status, count(*) as users from user_segments group by segment_status")
        counts = dict(zip(status["segment_status"], status["users"]))
        scored, waiting = counts.get("scored", 0), counts.get("not_enough_history", 0)
        items.append(("segmented shoppers", f"{num(scored)} ({pct(scored / max(scored + waiting, 1))})"))
        items.append(("not enough history yet", num(waiting)))
    cells = "".join(
        f'<div class="kpi"><div class="kpi-value" id="kpi-{esc(k.replace(" ", "-"))}">{esc(v)}</div>'
        f'<div class="kpi-label">{esc(k)}</div></div>'
        for k, v in items
    )
    return f'<div class="kpis">{cells}</div>'


def daily_volumes(w: Warehouse) -> str:
    daily = w.rows(
        "select cast(event_time as date) as day, event_type, count(*) as events "
        "from stg_events group by cast(event_time as date), event_type order by day",
        "stg_events", what="events",
    )
    pivot = daily.pivot_table(index="day", columns="event_type", values="events", aggfunc="sum", fill_value=0)
    pivot = pivot.reindex(columns=[t for t in EVENT_TYPES if t in pivot.columns])
    pivot.index = pd.to_datetime(pivot.index)
    active_days = len(pivot)
    # Days without events are zeros, not a line drawn across the gap.
    pivot = pivot.reindex(pd.date_range(pivot.index.min(), pivot.index.max(), freq="D"), fill_value=0)
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.stackplot(pivot.index, pivot.T.to_numpy(), labels=list(pivot.columns), colors=PALETTE[: len(pivot.columns)],
                 alpha=0.85)
    if len(pivot) == 1:  # a single day draws no area
        ax.bar(pivot.index, pivot.sum(axis=1), width=0.6, color=PALETTE[0])
    ax.set_ylabel("events per day")
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    peak = pivot.sum(axis=1).idxmax()
    per_active_day = pivot.sum(axis=1).sum() / active_days
    text = (f"{active_days} day(s) with events; the busiest day is {peak:%A %d %B %Y} with "
            f"{num(pivot.sum(axis=1).max())} events (average {num(per_active_day)} per day with events).")
    return f"<p>{esc(text)}</p>" + figure_html(fig, "Events per day by event type")


def funnel(w: Warehouse) -> str:
    row = w.rows(
        "select "
        "count(distinct case when event_type = 'view' then user_id end) as viewed, "
        "count(distinct case when event_type = 'cart' then user_id end) as carted, "
        "count(distinct case when event_type = 'purchase' then user_id end) as purchased, "
        "count(distinct user_id) as shoppers from stg_events",
        "stg_events", what="events",
    ).iloc[0]
    steps = pd.DataFrame({
        "step": ["viewed a product", "added to cart", "purchased"],
        "shoppers": [row["viewed"], row["carted"], row["purchased"]],
    })
    steps["share of all shoppers"] = steps["shoppers"] / max(row["shoppers"], 1)
    steps["from previous step"] = steps["shoppers"] / steps["shoppers"].shift(1).replace(0, np.nan)
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.barh(steps["step"][::-1], steps["shoppers"][::-1], color=[PALETTE[3], PALETTE[1], PALETTE[0]])
    for y, value in enumerate(steps["shoppers"][::-1]):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("shoppers")
    ax.margins(x=0.15)
    return figure_html(fig, "Funnel: shoppers who viewed, carted and purchased") + table(
        steps, {"shoppers": num, "share of all shoppers": pct, "from previous step": pct}
    )


def prices(w: Warehouse) -> str:
    quantiles = w.rows(
        "select count(*) as priced_views, "
        "percentile_cont(0.25) within group (order by price) as p25, "
        "percentile_cont(0.5) within group (order by price) as median, "
        "percentile_cont(0.75) within group (order by price) as p75, "
        "percentile_cont(0.99) within group (order by price) as p99, max(price) as max "
        "from stg_events where event_type = 'view' and price > 0",
        "stg_events", what="priced views",
    )
    if quantiles.iloc[0]["priced_views"] == 0:
        raise Unavailable("no viewed product has a price")
    bins = w.frame(
        "select floor(ln(price) / ln(10) * 10) as bin, count(*) as events "
        "from stg_events where event_type = 'view' and price > 0 group by floor(ln(price) / ln(10) * 10) order by bin"
    )
    edges = 10 ** (bins["bin"].astype(float) / 10)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.bar(edges, bins["events"], width=edges * (10 ** 0.1 - 1), align="edge", color=PALETTE[0])
    ax.set_xscale("log")
    ax.set_xlabel("price of the viewed product (log scale)")
    ax.set_ylabel("views")
    ax.grid(alpha=0.3)
    return (
        "<p>Prices of viewed products are heavy-tailed: the model uses them after log(1 + x) and clipping.</p>"
        + figure_html(fig, "Price distribution of viewed products")
        + table(quantiles.astype(float), {c: (lambda v: num(v, 2)) for c in quantiles.columns if c != "priced_views"}
                | {"priced_views": num})
    )


def categories(w: Warehouse) -> str:
    mix = w.rows(
        "select coalesce(category_l1, '(no category code)') as category, count(*) as events, "
        "sum(case when event_type = 'purchase' then coalesce(price, 0) else 0 end) as revenue "
        "from stg_events group by coalesce(category_l1, '(no category code)') order by events desc",
        "stg_events", what="events",
    )
    top = mix.head(12).copy()
    if len(mix) > 12:
        rest = mix.iloc[12:]
        top.loc[len(top)] = ["(other categories)", rest["events"].sum(), rest["revenue"].sum()]
    top["event share"] = top["events"] / mix["events"].sum()
    top["revenue share"] = top["revenue"] / mix["revenue"].sum() if mix["revenue"].sum() > 0 else np.nan
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1))
    y = np.arange(len(top))[::-1]
    ax.barh(y + 0.2, top["event share"], height=0.4, label="events", color=PALETTE[0])
    ax.barh(y - 0.2, top["revenue share"].fillna(0), height=0.4, label="revenue", color=PALETTE[2])
    ax.set_yticks(y, top["category"])
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return figure_html(fig, "Category mix: share of events and of revenue") + table(
        top, {"events": num, "revenue": num, "event share": pct, "revenue share": pct}
    )


def missing_values(w: Warehouse) -> str:
    row = w.rows(
        "select count(*) as events, "
        "sum(case when brand is null then 1 else 0 end) as no_brand, "
        "sum(case when category_code is null then 1 else 0 end) as no_category_code, "
        "sum(case when price is null then 1 else 0 end) as no_price "
        "from stg_events",
        "stg_events", what="events",
    ).iloc[0]
    if row["events"] == 0:
        raise Unavailable("no events yet")
    frame = pd.DataFrame({
        "field": ["brand", "category_code", "price"],
        "empty in the file": [row["no_brand"], row["no_category_code"], row["no_price"]],
        "meaning": ["brand not given", "category not coded (the category id is still there)",
                    "price 0 in the file, kept as unknown"],
    })
    frame["share of events"] = frame["empty in the file"] / row["events"]
    return (
        "<p>Empty fields are kept as NULL (never guessed); the features treat them as unknown.</p>"
        + table(frame, {"empty in the file": num, "share of events": pct})
    )


def outliers(w: Warehouse) -> str:
    parts = []
    users = w.rows(
        "select count(*) as shoppers, "
        "percentile_cont(0.5) within group (order by events) as median_events, "
        "percentile_cont(0.9) within group (order by events) as p90_events, "
        "percentile_cont(0.99) within group (order by events) as p99_events, "
        "max(events) as max_events, sum(events) as events from user_features",
        "user_features", what="shoppers",
    ).iloc[0]
    if users["shoppers"] > 0:
        top = w.frame(
            "select sum(events) as events from (select events, "
            "ntile(100) over (order by events desc, user_id) as percentile from user_features) as ranked "
            "where percentile = 1"
        ).iloc[0]["events"]
        parts.append(
            f"<p>Activity per shopper is heavy-tailed: median {num(users['median_events'])} events, "
            f"90th percentile {num(users['p90_events'])}, 99th {num(users['p99_events'])}, "
            f"maximum {num(users['max_events'])}; the most active 1% of shoppers make "
            f"{pct(float(top) / max(float(users['events']), 1))} of all events. The model compresses such "
            "features with log(1 + x) and clips them to the 1st–99th training percentiles, so a few extreme "
            "shoppers cannot pull the segments.</p>"
        )
    try:
        loads = w.rows(
            "select count(*) as files, sum(rows_read) as lines_read, sum(rows_accepted) as accepted, "
            "sum(rows_rejected) as rejected, sum(rows_duplicate) as duplicates from stg_event_loads",
            "stg_event_loads", what="loads",
        )
        parts.append("<p>Landed files and how their lines were split (stg_event_loads):</p>"
                     + table(loads, {c: num for c in loads.columns}))
    except Unavailable as reason:
        parts.append(note(f"Load audit not available: {reason}."))
    try:
        rejected = w.rows(
            "select reject_reason as rule, count(*) as lines from stg_events_rejected "
            "group by reject_reason order by lines desc",
            "stg_events_rejected", what="rejected lines",
        )
        parts.append("<p>Rejected lines by the rule they break (stg_events_rejected):</p>"
                     + table(rejected, {"lines": num}))
    except Unavailable as reason:
        parts.append(note(f"Rejected lines: {reason}."))
    return "\n".join(parts)
