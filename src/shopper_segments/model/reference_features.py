"""The per-shopper features computed the usual notebook way, with pandas, straight from the files.

Written independently of the SQL models, it serves two purposes: the test suite checks the
warehouse's user_features against it, and the benchmark measures the warehouse against it.
It reads whole files into memory, as a notebook would.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from ..ingest.files import EXPECTED_COLUMNS

# Money is exact, as in the warehouse (numeric(28,6)): prices have at most 6 decimals (the price rule),
# so they are summed as integer millionths; an average is the exact total / a count, one float
# division, which is what the warehouse computes (docs/data_quality.md, "Money").
MICROS = 10**6

COLUMNS = list(EXPECTED_COLUMNS)  # the REES46 format's nine columns, as the loader expects them


def marketing_days(project: Path) -> set:
    """The sale days of the project's seeds/marketing_calendar.csv (the dbt seed the features read)."""
    calendar = pd.read_csv(project / "seeds" / "marketing_calendar.csv", parse_dates=["calendar_date"])
    return set(calendar["calendar_date"].dt.date)


def read_events(paths: list[Path]) -> pd.DataFrame:
    """Valid, de-duplicated events of REES46 files (header or not), as pandas would read them."""
    frames = []
    for path in paths:
        with open(path, "rb") as handle:
            first = handle.read(10)
        header = 0 if not first.startswith(b"20") else None
        frame = pd.read_csv(
            path,
            header=header,
            names=COLUMNS,
            dtype={"category_code": "string", "brand": "string", "user_session": "string"},
            on_bad_lines="skip",
            engine="c",
        )
        frames.append(frame)
    events = pd.concat(frames, ignore_index=True)
    # A truncated last line parses with missing trailing fields: drop incomplete rows.
    events = events.dropna(subset=["event_time", "event_type", "product_id", "user_id", "user_session", "price"])
    events = events[events["price"] >= 0]
    events = events.drop_duplicates()
    events["event_time"] = pd.to_datetime(events["event_time"].str.slice(0, 19))
    events["price"] = events["price"].where(events["price"] != 0)  # 0 = price not recorded
    events["category_l1"] = events["category_code"].str.split(".").str[0]
    return events.reset_index(drop=True)


def exact_money(micros: pd.Series) -> pd.Series:
    """Integer millionths as exact decimals (what the warehouse's numeric(28,6) holds)."""
    return micros.map(lambda m: Decimal(int(m)).scaleb(-6))


def exact_average(total_micros: pd.Series, count: pd.Series) -> pd.Series:
    """total / count, NULL when count is 0: the exact total as a float (micros / 10**6 is correctly
    rounded, both being exact), then one float division, as safe_divide does in SQL."""
    total = total_micros.astype("int64").to_numpy() / MICROS
    return pd.Series(total, index=total_micros.index) / count.replace(0, np.nan).astype(float)


def user_features(
    events: pd.DataFrame, marketing_days: set, night_hours: tuple[int, int] = (0, 6)
) -> pd.DataFrame:
    """One row per user_id with the features of models/features (same names and formulas)."""
    e = events.copy()
    e["date"] = e["event_time"].dt.normalize()
    e["is_view"] = e["event_type"] == "view"
    e["is_cart"] = e["event_type"] == "cart"
    e["is_remove"] = e["event_type"] == "remove_from_cart"
    e["is_purchase"] = e["event_type"] == "purchase"
    e["is_weekend"] = e["event_time"].dt.day_of_week >= 5
    hours = e["event_time"].dt.hour
    e["is_night"] = (hours >= night_hours[0]) & (hours < night_hours[1])
    e["is_marketing"] = e["date"].dt.date.isin(marketing_days)
    price_micros = np.rint(e["price"] * MICROS).astype("Int64")  # exact: parsed prices have <= 6 decimals
    e["purchase_micros"] = price_micros.where(e["is_purchase"])
    e["view_micros"] = price_micros.where(e["is_view"])

    session_key = ["user_id", "user_session"]
    sessions = e.groupby(session_key).agg(
        start=("event_time", "min"),
        end=("event_time", "max"),
        carts=("is_cart", "sum"),
        purchases=("is_purchase", "sum"),
    )
    sessions["duration"] = (sessions["end"] - sessions["start"]).dt.total_seconds()
    carted = e[e["is_cart"]][session_key + ["product_id"]].drop_duplicates()
    bought = e[e["is_purchase"]][session_key + ["product_id"]].drop_duplicates().assign(bought=1)
    carted = carted.merge(bought, how="left", on=session_key + ["product_id"]).fillna({"bought": 0})

    by_user = e.groupby("user_id")
    f = pd.DataFrame(
        {
            "events": by_user.size(),
            "first_event_at": by_user["event_time"].min(),
            "last_event_at": by_user["event_time"].max(),
            "active_days": by_user["date"].nunique(),
            "views": by_user["is_view"].sum(),
            "carts": by_user["is_cart"].sum(),
            "removes": by_user["is_remove"].sum(),
            "purchases": by_user["is_purchase"].sum(),
            "revenue_micros": by_user["purchase_micros"].sum(),
            "priced_purchases": by_user["purchase_micros"].count(),
            "view_micros": by_user["view_micros"].sum(),
            "priced_views": by_user["view_micros"].count(),
            "distinct_products": by_user["product_id"].nunique(),
            "distinct_categories": by_user["category_id"].nunique(),
            "distinct_brands": by_user["brand"].nunique(),
            "weekend_share": by_user["is_weekend"].mean(),
            "night_share": by_user["is_night"].mean(),
            "marketing_period_share": by_user["is_marketing"].mean(),
        }
    )
    s = sessions.groupby("user_id")
    f["sessions"] = s.size()
    # Vectorised counts of sessions with a purchase / a cart (a per-group lambda is 100x slower).
    f["orders"] = (sessions["purchases"] > 0).groupby(level="user_id").sum()
    f["avg_session_duration_seconds"] = s["duration"].mean()
    cart_sessions = (sessions["carts"] > 0).groupby(level="user_id").sum()
    abandoned = sessions[(sessions["carts"] > 0) & (sessions["purchases"] == 0)].groupby("user_id").size()
    f["cart_abandonment_rate"] = abandoned.reindex(f.index, fill_value=0) / cart_sessions.replace(0, np.nan)
    carted_by_user = carted.groupby("user_id")["bought"].agg(["size", "sum"])
    f["cart_to_purchase_rate"] = (carted_by_user["sum"] / carted_by_user["size"]).reindex(f.index)
    f["view_to_cart_rate"] = f["carts"] / f["views"].replace(0, np.nan)
    f["session_conversion_rate"] = f["orders"] / f["sessions"]
    f["revenue"] = exact_money(f["revenue_micros"])
    f["avg_order_value"] = exact_average(f["revenue_micros"], f["orders"])
    f["avg_purchased_price"] = exact_average(f["revenue_micros"], f.pop("priced_purchases"))
    f["avg_viewed_price"] = exact_average(f.pop("view_micros"), f.pop("priced_views"))
    f = f.drop(columns="revenue_micros")
    f["events_per_session"] = f["events"] / f["sessions"]
    f["tenure_days"] = (f["last_event_at"] - f["first_event_at"]).dt.total_seconds() / 86400
    f["recency_days"] = (e["event_time"].max() - f["last_event_at"]).dt.total_seconds() / 86400

    categories = e["category_l1"].fillna("uncategorised")
    counts = e.assign(category=categories).groupby(["user_id", "category"]).size().rename("n").reset_index()
    top = counts.sort_values(["user_id", "n", "category"], ascending=[True, False, True]).drop_duplicates("user_id")
    f["top_category"] = top.set_index("user_id")["category"]
    f["top_category_share"] = top.set_index("user_id")["n"] / f["events"]
    shares = counts.pivot_table(index="user_id", columns="category", values="n", fill_value=0).div(f["events"], axis=0)
    for category in shares.columns:
        f[f"share_{category}"] = shares[category]

    brands = e.dropna(subset=["brand"]).groupby(["user_id", "brand"]).size()
    brand_totals = brands.groupby("user_id").agg(["max", "sum"])
    f["brand_loyalty"] = (brand_totals["max"] / brand_totals["sum"]).reindex(f.index)
    return f.reset_index()
