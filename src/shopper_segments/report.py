"""`segments report`: what the business sees, as one self-contained HTML file.

    segments report [--output reports/segment_report.html] [--pca-sample 4000]

Reads the warehouse the dbt build filled (DuckDB by default, PostgreSQL with SEGMENTS_TARGET=postgres):
the events (staging), the features and the segment marts. Aggregations run in SQL; only small
aggregates and a bounded, deterministic sample of scored shoppers (for the PCA scatter) come into
Python. Plots are inline PNG (matplotlib, Agg), styles are inline: the file reads offline and can be
mailed as it is. A table that is missing or empty gives a short "not available" note, never a crash.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import settings  # noqa: E402

EVENT_TYPES = ["view", "cart", "remove_from_cart", "purchase"]
WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]  # extract(dow): 0 = Sunday
PALETTE = plt.get_cmap("tab10").colors


class Unavailable(Exception):
    """The tables a part of the report needs are missing or empty: it says so instead."""


# --------------------------------------------------------------------------------------------------
# Reading the warehouse
# --------------------------------------------------------------------------------------------------


class Warehouse:
    """Read-only access to the tables of the target: DuckDB file, or PostgreSQL through the dbt profile."""

    def __init__(self, target: str):
        self.target = target
        if target == "duckdb":
            import duckdb

            path = settings.duckdb_path()
            if not path.exists():
                raise SystemExit(f"No warehouse at {path}: run `segments run` (or `make demo`) first.")
            self._con = duckdb.connect(str(path), read_only=True)
            self.location = str(path)
            schema = "main"
            names = self._con.sql(
                "select table_name from information_schema.tables where table_schema = ?", params=[schema]
            ).fetchall()
        elif target == "postgres":
            from .ingest import connections

            self._con = connections.connect(target)
            self._con.autocommit = True
            schema = connections.target_schema(target)
            self.location = f"PostgreSQL schema {schema}"
            with self._con.cursor() as cur:
                cur.execute(f"set search_path to {connections.quote(schema)}")
                cur.execute("select table_name from information_schema.tables where table_schema = %s", (schema,))
                names = cur.fetchall()
        else:
            raise SystemExit(f"`segments report` reads DuckDB or PostgreSQL, not {target!r}.")
        self.tables = {name for (name,) in names}

    def frame(self, sql: str) -> pd.DataFrame:
        if self.target == "duckdb":
            return self._con.sql(sql).df()
        from .ingest.connections import read_frame

        return read_frame(self._con, sql)

    def need(self, *tables: str) -> None:
        missing = [t for t in tables if t not in self.tables]
        if missing:
            raise Unavailable(f"table {', '.join(missing)} not in the warehouse")

    def rows(self, sql: str, *tables: str, what: str = "rows") -> pd.DataFrame:
        """`sql` over `tables`; Unavailable when a table is missing or the result is empty."""
        self.need(*tables)
        frame = self.frame(sql)
        if frame.empty:
            raise Unavailable(f"no {what} yet")
        return frame

    def close(self) -> None:
        self._con.close()


# --------------------------------------------------------------------------------------------------
# HTML helpers
# --------------------------------------------------------------------------------------------------


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def num(value, digits: int = 0) -> str:
    if is_missing(value):
        return "–"
    return f"{value:,.{digits}f}"


def pct(value, digits: int = 1) -> str:
    return "–" if is_missing(value) else f"{100 * value:.{digits}f}%"


def table(frame: pd.DataFrame, formats: dict[str, Callable] | None = None, css: str = "") -> str:
    formats = formats or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            shown = formats[column](value) if column in formats else ("–" if is_missing(value) else value)
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            cells.append(f"<td{' class=num' if numeric else ''}>{esc(shown)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure_html(fig, alt: str) -> str:
    """The figure as an inline PNG (closed afterwards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


@dataclass
class Report:
    """The sections of the report, in order, and what could not be built."""

    warehouse: Warehouse
    pca_sample: int = 4000
    parts: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    no_model_reason: str | None = None  # why the model and segment parts are empty, if no version is fitted

    def block(self, title: str, build: Callable[[], str], level: int = 3) -> str:
        """One titled part; a missing table becomes a note, an unexpected error a visible message."""
        try:
            body = build()
        except Unavailable as reason:
            self.unavailable.append(title)
            body = note(f"Not available: {reason}." + (f" {self.no_model_reason}" if self.no_model_reason else ""))
        except Exception as error:  # noqa: BLE001 - the rest of the report is still worth writing
            self.failed.append(title)
            traceback.print_exc(file=sys.stderr)
            body = f'<p class="error">This part could not be built: {esc(type(error).__name__)}: {esc(error)}</p>'
        return f"<h{level}>{esc(title)}</h{level}>\n{body}"


# --------------------------------------------------------------------------------------------------
# Shared queries
# --------------------------------------------------------------------------------------------------


def latest(table_name: str) -> str:
    return f"(select max(v.model_version) from {table_name} as v)"


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


# --------------------------------------------------------------------------------------------------
# Descriptive analysis of the events
# --------------------------------------------------------------------------------------------------


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


VERDICT_TEXT = {
    "stable": "today's shoppers look like the ones the model was trained on: the segments can be used as they are.",
    "drifting": "some behaviour has moved since the model was trained: watch the features below before "
                "planning on segment sizes.",
    "retrain recommended": "the shoppers have moved far from the training data: fit a new model version "
                           "(`segments run --retrain`, or `--retrain-if-drifted` on every run).",
}


def what_changed(w: Warehouse) -> str:
    """The newest run against the training data and the previous run (segment_drift, docs/model.md "Drift")."""
    run = w.rows(
        "select measure_type, measure_name, segment_id, current_value, training_value, previous_value, psi, "
        "verdict, verdict_rule, model_version, run_started_at from segment_drift "
        "where run_started_at = (select max(r.run_started_at) from segment_drift as r)",
        "segment_drift", what="drift measured (no model version fitted)",
    )
    first = run.iloc[0]
    verdict = str(first["verdict"])
    parts = [f'<div class="verdict" id="drift-verdict"><b>{esc(verdict.capitalize())}</b> (run of '
             f"{pd.Timestamp(first['run_started_at']):%Y-%m-%d %H:%M} UTC against model version "
             f"{int(first['model_version'])}): {esc(VERDICT_TEXT.get(verdict, ''))} "
             f"<small>Rule: {esc(first['verdict_rule'])}.</small></div>"]
    shares = run[run.measure_type == "segment_share"].copy()
    if len(shares):
        names = {}
        if "segment_labels" in w.tables:
            labels = w.frame(f"select segment_id, segment_name from segment_labels "
                             f"where model_version = {int(first['model_version'])}")
            names = dict(zip(labels.segment_id, labels.segment_name))
        shares["segment"] = [names.get(i, f"segment {i}") for i in shares.segment_id]
        shares["change since training"] = shares.current_value - shares.training_value
        shares["change since previous run"] = shares.current_value - shares.previous_value
        shares = shares.sort_values("change since training", key=abs, ascending=False)
        shares = shares.rename(columns={"current_value": "share now", "training_value": "share at training",
                                        "previous_value": "share at previous run"})
        signed = lambda v: "" if is_missing(v) else f"{v * 100:+.1f} pts"  # noqa: E731
        parts.append("<h4>Segment shares</h4>" + table(
            shares[["segment", "share now", "share at training", "share at previous run", "change since training",
                    "change since previous run"]],
            {"share now": pct, "share at training": pct, "share at previous run": lambda v: "" if is_missing(v) else pct(v),
             "change since training": signed, "change since previous run": signed}))
    features = run[run.measure_type == "feature_psi"].sort_values("psi", ascending=False).head(5)
    if len(features):
        features = features.rename(columns={"measure_name": "feature", "psi": "PSI now", "previous_value": "PSI at previous run"})
        parts.append("<h4>Top drifting features (population stability index)</h4>" + table(
            features[["feature", "PSI now", "PSI at previous run"]],
            {"PSI now": lambda v: num(v, 3), "PSI at previous run": lambda v: "" if is_missing(v) else num(v, 3)}))
    flow = run[run.measure_type == "shopper_flow"].set_index("measure_name").current_value
    if len(flow):
        parts.append(note(f"Since the previous run: {num(flow.get('newly_scored', 0))} shoppers newly scored, "
                          f"{num(flow.get('changed_segment', 0))} changed segment, {num(flow.get('left', 0))} left "
                          f"(erased, expired or below min_events); {num(flow.get('scored', 0))} scored now."))
    return "\n".join(parts)


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


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------


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
        "select k, inertia, silhouette, stability_ari, is_stable, is_elbow, is_chosen, reason "
        f"from segment_k_selection where model_version = {latest('segment_k_selection')} order by k",
        "segment_k_selection", what="k scan",
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    left.plot(scan["k"], scan["inertia"], marker="o", color=PALETTE[0])
    left.set_title("Elbow: inertia", fontsize=10)
    right.plot(scan["k"], scan["silhouette"], marker="o", color=PALETTE[2], label="silhouette")
    right.plot(scan["k"], scan["stability_ari"], marker="s", color=PALETTE[4], label="bootstrap stability")
    right.set_title("Silhouette and stability", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        for k in scan.loc[scan["is_chosen"].astype(bool), "k"]:
            ax.axvline(k, color="grey", linestyle="--")
        ax.set_xlabel("number of segments k")
        ax.grid(alpha=0.3)
    reason = scan.loc[scan["is_chosen"].astype(bool), "reason"].dropna()
    text = reason.iloc[0] if len(reason) else "The number of segments was fixed by configuration."
    return f"<p>{esc(text)}</p>" + figure_html(fig, "k selection: elbow and silhouette curves")


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


# --------------------------------------------------------------------------------------------------
# The segments
# --------------------------------------------------------------------------------------------------


def segments_overview(w: Warehouse, segments: pd.DataFrame) -> str:
    columns = {"segment_id": "id", "segment_name": "segment", "users": "shoppers", "user_share": "share",
               "conversion_rate": "conversion", "revenue_share": "revenue share", "avg_order_value": "AOV"}
    frame = segments[[c for c in columns if c in segments.columns]].rename(columns=columns)
    return table(frame, {"shoppers": num, "share": pct, "conversion": pct, "revenue share": pct,
                         "AOV": lambda v: num(v, 2)})


def pca_scatter(w: Warehouse, segments: pd.DataFrame, sample: int) -> str:
    from .model.params import StoredModel

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
                 rules: pd.DataFrame, timing: dict[int, str], colour) -> str:
    sid = int(segment["segment_id"])
    name = segment["segment_name"]
    facts = [("shoppers", num(segment["users"])), ("share of shoppers", pct(segment["user_share"]))]
    if "revenue_share" in segment:
        facts += [("share of revenue", pct(segment["revenue_share"])), ("buy (conversion)", pct(segment["conversion_rate"])),
                  ("average order value", num(segment["avg_order_value"], 2))]
    fact_html = "".join(f'<div class="fact"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for k, v in facts)

    if journeys is not None and sid in journeys.index:
        j = journeys.loc[sid]
        users = max(float(j["users"]), 1)
        journey = (f"<p>{pct(j['viewed'] / users)} viewed a product → {pct(j['carted'] / users)} added to cart → "
                   f"{pct(j['purchased'] / users)} purchased. On average {num(j['sessions'], 1)} visits of "
                   f"{num(j['events_per_session'], 1)} events and {num(j['session_seconds'] / 60, 1)} minutes; "
                   f"cart abandonment {pct(j['cart_abandonment'])}.</p>")
    else:
        journey = note("Not available: no scored shoppers in this segment.")

    own_rules = rules[rules["segment_id"] == sid].head(3)
    if len(own_rules):
        items = "".join(
            f"<li><code>{esc(r.rule_text)}</code> — precision {pct(r.precision, 0)}, covers {pct(r.coverage, 0)} "
            "of the segment</li>" for r in own_rules.itertuples()
        )
        rules_html = f"<ul class=rules>{items}</ul>"
    else:
        rules_html = note("Not available: no decision-tree rule describes this segment.")

    value = ""
    if "revenue_share" in segment and not is_missing(segment["revenue_share"]) and segment["user_share"]:
        ratio = segment["revenue_share"] / segment["user_share"]
        value = (f"<li><b>Priority:</b> {pct(segment['user_share'])} of shoppers bring "
                 f"{pct(segment['revenue_share'])} of revenue ({ratio:.2f}× their weight): "
                 f"{'protect and grow this value' if ratio >= 1 else 'convert them at low cost'}.</li>")
    timing_html = f"<li><b>Timing:</b> {esc(timing[sid])}.</li>" if sid in timing else ""
    actions = (f"<ul class=actions><li><b>Newsletter and promotions:</b> {esc(segment['marketing_action'])}</li>"
               f"{timing_html}{value}</ul>")

    chart = zscore_chart(traits, sid, colour) if traits is not None else note("Not available: no segment traits.")
    return f"""
<section class="card" id="segment-{sid}" style="border-left-color: {matplotlib.colors.to_hex(colour)}">
  <h3><span class="segment-name">{esc(name)}</span> <small>segment {sid}</small></h3>
  <div class="facts">{fact_html}</div>
  <div class="columns">
    <div>
      <h4>Portrait</h4><p>{esc(segment['description'])}</p>
      <p class="traits">Stands out by: {esc(segment['distinctive_traits'])}</p>
      <h4>Typical journey</h4>{journey}
      <h4>How to recognise them (decision-tree rules)</h4>{rules_html}
    </div>
    <div><h4>Distinguishing features</h4>{chart}</div>
  </div>
  <h4>Action plan</h4>{actions}
</section>"""


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


def segments_part(w: Warehouse, report: Report) -> str:
    try:
        segments = segment_order(w)
    except Unavailable as reason:
        report.unavailable.append("Segments")
        if report.no_model_reason:
            return note(f"Not available: {reason}. {report.no_model_reason}")
        return note(f"Not available: {reason} (the model has not segmented anyone yet).")
    version = int(segments["model_version"].iloc[0])
    parts = [
        f"<p>Model version {version}: {len(segments)} segments. Each card below is an action plan for marketing "
        "and general management.</p>",
        report.block("Overview", lambda: segments_overview(w, segments)),
        report.block("Segments on the principal components (PCA)", lambda: pca_scatter(w, segments, report.pca_sample)),
        report.block("Segment profiles", lambda: profile_heatmap(traits_frame(w), segments)),
        report.block("Funnel per segment", lambda: funnel_per_segment(segment_journeys(w), segments)),
        report.block("One card per segment", lambda: segment_cards(w, segments)),
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0;
       color: #1d2430; background: #f5f6f8; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; background: #fff; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #dde1e7; padding-bottom: 4px; margin-top: 40px; }
h3 { margin-top: 28px; } h4 { margin: 14px 0 4px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e6ea; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { max-width: 100%; display: block; margin: 8px 0; }
.note { color: #6b7280; font-style: italic; } .error { color: #b91c1c; font-weight: bold; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.kpi { background: #f0f4fa; border-radius: 6px; padding: 10px 16px; min-width: 140px; }
.kpi-value { font-size: 20px; font-weight: bold; } .kpi-label { color: #4b5563; font-size: 13px; }
.card { border: 1px solid #dde1e7; border-left: 6px solid #888; border-radius: 6px; padding: 8px 18px 14px;
        margin: 18px 0; page-break-inside: avoid; }
.card small { color: #6b7280; font-weight: normal; }
.facts { display: flex; flex-wrap: wrap; gap: 18px; }
.fact b { display: block; font-size: 18px; } .fact span { color: #4b5563; font-size: 12px; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.traits { color: #374151; font-size: 13px; } .rules code { font-size: 12px; white-space: normal; }
.actions { background: #f3faf4; border-radius: 6px; padding: 10px 10px 10px 28px; }
.verdict { border-radius: 6px; padding: 12px 16px; margin: 12px 0; font-size: 15px; }
.verdict-clear { background: #ecfdf3; } .verdict-weak { background: #fff8e6; } .verdict-none { background: #fdecec; }
footer { color: #6b7280; font-size: 12px; margin-top: 40px; }
@media (max-width: 800px) { .columns { grid-template-columns: 1fr; } }
"""


def no_model_reason(w: Warehouse) -> str | None:
    """Why no model version is fitted (too few eligible shoppers), or None when one is.

    The fit's settings are the project's (dbt_project.yml): a run with other `--vars` is not known here.
    """
    from .model import fit
    from .model import params as modeling

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


def build_html(w: Warehouse, pca_sample: int) -> Report:
    report = Report(w, pca_sample=pca_sample)
    report.no_model_reason = no_model_reason(w)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>Shopper segments</h1>",
        f"<p>Who our shoppers are, from their browsing and buying habits. Generated {esc(generated)} from "
        f"{esc(w.location)}.</p>",
        '<nav><a href="#data">The data</a><a href="#method">The method</a><a href="#segments">The segments</a></nav>',
        report.block("What changed", lambda: what_changed(w), level=2),
        report.block("Are there segments?", lambda: structure_verdict(w), level=2),
        report.block("Key figures", lambda: key_figures(w), level=2),
        '<h2 id="data">The data: what shoppers did</h2>',
        report.block("Events per day", lambda: daily_volumes(w)),
        report.block("Funnel: view, cart, purchase", lambda: funnel(w)),
        report.block("Prices", lambda: prices(w)),
        report.block("Category mix", lambda: categories(w)),
        report.block("Missing values", lambda: missing_values(w)),
        report.block("Outliers and rejected lines", lambda: outliers(w)),
        '<h2 id="method">The method: how the segments are made</h2>',
        report.block("Features used", lambda: features_used(w)),
        report.block("Minimum-events threshold", lambda: threshold(w)),
        report.block("Preprocessing", lambda: preprocessing(w)),
        report.block("Choosing the number of segments (k)", lambda: k_selection(w)),
        report.block("Model quality", lambda: model_metrics(w)),
        report.block("Cross-validation", lambda: cross_validation(w)),
        report.block("Method comparison", lambda: method_comparison(w)),
        '<h2 id="segments">The segments</h2>',
        segments_part(w, report),
        "<footer>Data source: REES46 Marketing Platform (https://rees46.com), Open CDP. Segments describe "
        "behaviour only, never demographics; shopper-level data stays in the warehouse (docs/gdpr.md).</footer>",
    ]
    report.parts = body
    return report


def render(report: Report) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Shopper segments report</title><style>{STYLE}</style></head>"
            f"<body><main>\n{chr(10).join(report.parts)}\n</main></body></html>\n")


def write_report(output: Path, pca_sample: int, target: str | None = None) -> Report:
    warehouse = Warehouse(target or settings.target())
    try:
        report = build_html(warehouse, pca_sample)
    finally:
        warehouse.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(report), encoding="utf-8")
    return report
