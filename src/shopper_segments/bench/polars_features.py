"""The per-shopper features of models/features computed with Polars (lazy scan, streaming engine): what a
data scientist would reach for today instead of pandas. The benchmark's second reference.

Same cleaning and same formulas as the pandas reference (`model/reference_features.py`), which the test
suite checks against the warehouse; tests/pytest/test_bench.py checks this one against the pandas one.
Polars is a dev dependency (requirements/dev.txt): `segments bench` reports the step as not run
without it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from ..ingest.files import EXPECTED_COLUMNS

MICROS = 10**6
SCHEMA = {
    "event_time": pl.String, "event_type": pl.String, "product_id": pl.Int64, "category_id": pl.Int64,
    "category_code": pl.String, "brand": pl.String, "price": pl.Float64, "user_id": pl.Int64,
    "user_session": pl.String,
}
assert tuple(SCHEMA) == tuple(EXPECTED_COLUMNS)
# A tenth column catches lines with too many fields, which the pandas reference skips as bad lines.
EXTRA_FIELD = "extra_field"


def scan_events(paths: list[Path]) -> pl.LazyFrame:
    """Valid, de-duplicated events of REES46 files (header or not), as the pandas reference keeps them."""
    frames = []
    for path in paths:
        with open(path, "rb") as handle:
            has_header = not handle.read(10).startswith(b"20")
        frames.append(pl.scan_csv(path, has_header=has_header, schema={**SCHEMA, EXTRA_FIELD: pl.String},
                                  truncate_ragged_lines=True, missing_columns="insert"))
    required = ["event_time", "event_type", "product_id", "user_id", "user_session", "price"]
    return (
        pl.concat(frames)
        .filter(pl.col(EXTRA_FIELD).is_null())
        .drop(EXTRA_FIELD)
        .drop_nulls(required)
        .filter(pl.col("price") >= 0)
        .unique()
        .with_columns(
            event_time=pl.col("event_time").str.slice(0, 19).str.to_datetime("%Y-%m-%d %H:%M:%S"),
            price=pl.when(pl.col("price") != 0).then(pl.col("price")),  # 0 = price not recorded
            category_l1=pl.col("category_code").str.split(".").list.first(),
        )
    )


def _money(micros: str) -> pl.Expr:
    return pl.col(micros).cast(pl.Float64) / MICROS


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null when the denominator is 0 (safe_divide in SQL)."""
    return pl.when(denominator != 0).then(numerator.cast(pl.Float64) / denominator)


def user_features(events: pl.LazyFrame, marketing_days: set[date], night_hours: tuple[int, int] = (0, 6)
                  ) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """One row per user_id with the features of models/features (the pandas reference's names) but the
    category ones, and the (user, category) event counts they are made of (`category_features`)."""
    hour = pl.col("event_time").dt.hour()
    price_micros = (pl.col("price") * MICROS).round(0).cast(pl.Int64)  # exact: prices have <= 6 decimals
    e = events.with_columns(
        date=pl.col("event_time").dt.date(),
        is_view=pl.col("event_type") == "view",
        is_cart=pl.col("event_type") == "cart",
        is_remove=pl.col("event_type") == "remove_from_cart",
        is_purchase=pl.col("event_type") == "purchase",
        is_weekend=pl.col("event_time").dt.weekday() >= 6,  # ISO: Saturday 6, Sunday 7
        is_night=(hour >= night_hours[0]) & (hour < night_hours[1]),
        category=pl.col("category_l1").fill_null("uncategorised"),
    ).with_columns(
        is_marketing=pl.col("date").is_in(sorted(marketing_days)),
        purchase_micros=pl.when(pl.col("is_purchase")).then(price_micros),
        view_micros=pl.when(pl.col("is_view")).then(price_micros),
    )
    session_key = ["user_id", "user_session"]
    sessions = (
        e.group_by(session_key)
        .agg(start=pl.col("event_time").min(), end=pl.col("event_time").max(),
             carts=pl.col("is_cart").sum(), purchases=pl.col("is_purchase").sum())
        .group_by("user_id")
        .agg(
            sessions=pl.len(),
            orders=(pl.col("purchases") > 0).sum(),
            avg_session_duration_seconds=(pl.col("end") - pl.col("start")).dt.total_seconds().cast(pl.Float64).mean(),
            cart_sessions=(pl.col("carts") > 0).sum(),
            abandoned=((pl.col("carts") > 0) & (pl.col("purchases") == 0)).sum(),
        )
    )
    carted = e.filter("is_cart").select(*session_key, "product_id").unique()
    bought = e.filter("is_purchase").select(*session_key, "product_id").unique().with_columns(bought=pl.lit(1))
    cart_to_purchase = (
        carted.join(bought, on=[*session_key, "product_id"], how="left")
        .group_by("user_id")
        .agg(cart_to_purchase_rate=pl.col("bought").fill_null(0).mean())
    )
    brand_loyalty = (
        e.drop_nulls("brand").group_by("user_id", "brand").len()
        .group_by("user_id").agg(brand_loyalty=pl.col("len").max() / pl.col("len").sum())
    )
    by_user = e.group_by("user_id").agg(
        events=pl.len(),
        first_event_at=pl.col("event_time").min(),
        last_event_at=pl.col("event_time").max(),
        active_days=pl.col("date").n_unique(),
        views=pl.col("is_view").sum(),
        carts=pl.col("is_cart").sum(),
        removes=pl.col("is_remove").sum(),
        purchases=pl.col("is_purchase").sum(),
        revenue_micros=pl.col("purchase_micros").sum(),
        priced_purchases=pl.col("purchase_micros").count(),
        view_micros=pl.col("view_micros").sum(),
        priced_views=pl.col("view_micros").count(),
        distinct_products=pl.col("product_id").drop_nulls().n_unique(),
        distinct_categories=pl.col("category_id").drop_nulls().n_unique(),
        distinct_brands=pl.col("brand").drop_nulls().n_unique(),
        weekend_share=pl.col("is_weekend").mean(),
        night_share=pl.col("is_night").mean(),
        marketing_period_share=pl.col("is_marketing").mean(),
    )
    newest = e.select(newest=pl.col("event_time").max())
    return (
        by_user.join(sessions, on="user_id", how="left")
        .join(cart_to_purchase, on="user_id", how="left")
        .join(brand_loyalty, on="user_id", how="left")
        .join(newest, how="cross")
        .with_columns(
            cart_abandonment_rate=_ratio(pl.col("abandoned"), pl.col("cart_sessions")),
            view_to_cart_rate=_ratio(pl.col("carts"), pl.col("views")),
            session_conversion_rate=_ratio(pl.col("orders"), pl.col("sessions")),
            revenue=_money("revenue_micros"),
            avg_order_value=_ratio(_money("revenue_micros"), pl.col("orders")),
            avg_purchased_price=_ratio(_money("revenue_micros"), pl.col("priced_purchases")),
            avg_viewed_price=_ratio(_money("view_micros"), pl.col("priced_views")),
            events_per_session=_ratio(pl.col("events"), pl.col("sessions")),
            tenure_days=(pl.col("last_event_at") - pl.col("first_event_at")).dt.total_seconds() / 86400,
            recency_days=(pl.col("newest") - pl.col("last_event_at")).dt.total_seconds() / 86400,
        )
        .drop("revenue_micros", "priced_purchases", "view_micros", "priced_views", "cart_sessions", "abandoned",
              "newest")
    ), e.group_by("user_id", "category").len()  # the category counts: category_features


def category_features(counts: pl.DataFrame) -> pl.DataFrame:
    """top_category, its event count (top_n) and the event count of every category (share_<category>,
    divided by the events afterwards) per shopper, from the (user, category) event counts: a few rows
    per shopper, small enough to pivot in memory."""
    top = (
        counts.sort(["user_id", "len", "category"], descending=[False, True, False])
        .unique("user_id", keep="first", maintain_order=True)
        .select("user_id", top_category="category", top_n="len")
    )
    per_category = counts.pivot(on="category", index="user_id", values="len").fill_null(0)
    per_category = per_category.rename({c: f"share_{c}" for c in per_category.columns if c != "user_id"})
    return top.join(per_category, on="user_id", how="left")


def features_of_files(paths: list[Path], marketing_days: set[date], night_hours: tuple[int, int] = (0, 6)
                      ) -> pl.DataFrame:
    """The whole reference: one lazy plan over the files, collected with the streaming engine."""
    features, counts = user_features(scan_events(paths), marketing_days, night_hours)
    features, counts = pl.collect_all([features, counts], engine="streaming")
    categories = category_features(counts)
    shares = [c for c in categories.columns if c.startswith("share_")]
    return (
        features.join(categories, on="user_id", how="left")
        .with_columns(top_category_share=pl.col("top_n") / pl.col("events"),
                      **{c: pl.col(c) / pl.col("events") for c in shares})
        .drop("top_n")
        .sort("user_id")
    )
