"""Post-fit analysis `threshold_curve` (see `analyses`): how often a shopper keeps their segment
when it is computed from n of their events, against the share of shoppers reaching n; the n
giving the most shoppers a segment they keep is the recommended `min_events`.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import reference_features
from ..params import single_threaded
from .study import ANALYSIS, StudyInputs, empty_frame, pending_model, seeded_sample, typed_frame


# --------------------------------------------------------------------------------------------------
# Minimum-events threshold
# --------------------------------------------------------------------------------------------------

THRESHOLD_COLUMNS = {
    "model_version": "int64",
    "min_events": "int64",
    "users_evaluated": "int64",
    "segments_evaluated": "int64",
    "agreement": "float64",
    "agreement_macro": "float64",
    "agreement_lowest_segment": "float64",
    "shoppers_reaching": "float64",
    "reliable_share": "float64",
    "is_reliable": "bool",
    "is_recommended": "bool",
    "is_current_setting": "bool",
    "random_seed": "int64",
}


EVENT_KEY = ["user_id", "event_time", "event_type", "product_id", "user_session", "price"]


def in_canonical_order(events: pd.DataFrame) -> pd.DataFrame:
    """The events sorted on EVENT_KEY: the same order whatever order the warehouse returned them in."""
    return events.sort_values([c for c in EVENT_KEY if c in events.columns], kind="stable", na_position="first")


def subsample_events(ordered: pd.DataFrame, n: int, seed: int, draws: int = 1) -> pd.DataFrame:
    """`draws` independent sets of n events drawn at random (without replacement) from each
    shopper's history, times and sessions kept; draw r of shopper u is the pseudo-shopper
    u * draws + r (so one feature computation serves every draw). Deterministic: `ordered` is in
    canonical order (`in_canonical_order`, or a subset of rows of a frame in that order).

    The draws are made on row positions (numpy), and the rows are taken from the frame once: the
    same rows, in the same order, as sorting the frame by (shopper, random key) for each draw."""
    users = ordered["user_id"].to_numpy()
    rng = np.random.default_rng(seed)
    kept, draw_of_row = [], []
    for draw in range(draws):
        by_user = np.lexsort((rng.random(len(users)), users))  # by shopper, then by a random key
        grouped = users[by_user]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        rank = np.arange(len(grouped)) - np.repeat(starts, np.diff(np.r_[starts, len(grouped)]))
        kept.append(by_user[rank < n])
        draw_of_row.append(np.full(len(kept[-1]), draw))
    rows, draw_of_row = np.concatenate(kept), np.concatenate(draw_of_row)
    pseudo_users = users[rows] * draws + draw_of_row
    order = np.lexsort((ordered["event_time"].to_numpy()[rows], pseudo_users))  # stable, as sort_values
    part = ordered.iloc[rows[order]].reset_index(drop=True)
    return part.assign(user_id=part["user_id"] * draws + draw_of_row[order])


def features_from_events(
    events: pd.DataFrame, marketing_days: set, night_hours: tuple[int, int], features: list[str]
) -> pd.DataFrame:
    """user_features recomputed from events (pandas reference, the same formulas as the SQL)."""
    frame = reference_features.user_features(events, marketing_days, night_hours)
    for feature in features:
        if feature not in frame.columns:
            frame[feature] = 0.0 if feature.startswith("share_") else np.nan
        elif feature.startswith("share_"):
            frame[feature] = frame[feature].fillna(0.0)
    return frame.sort_values("user_id").reset_index(drop=True)


# The stg_events columns the curve recomputes features from (both paths read these: the dbt Python
# model on DuckDB, `segments fit` elsewhere).
EVENT_COLUMNS = (
    "event_time, event_type, product_id, category_id, category_code, category_l1, brand, price, user_id, user_session"
)


def night_hours(meta) -> tuple[int, int]:
    """The night hours (the `night_start_hour` / `night_end_hour` vars) from the model's config meta."""
    return int(meta["night_start_hour"]), int(meta["night_end_hour"])


@single_threaded
def threshold_curve(
    params: pd.DataFrame,
    analysed_versions: Iterable[int],
    study: StudyInputs,
    fetch_events: Callable[[np.ndarray], pd.DataFrame],
    marketing_calendar: pd.DataFrame,
    night_hours: tuple[int, int],
) -> pd.DataFrame:
    """Agreement between a shopper's segment from n of their events and from their whole history.

    `fetch_events(ids)` returns the clean
    events (stg_events columns) of those shoppers. Shoppers with at least 2n events are evaluated
    at n (so the subsample is at most half of the history); the reference is the segment of their
    whole history, computed the same way. A threshold trades reliability (agreement grows with n)
    against coverage (fewer shoppers reach n): the recommended threshold maximises
    `reliable_share` = share of all shoppers reaching n x agreement at n, the expected share of
    shoppers who get a segment they keep, among the reliable n (agreement >= reliable_agreement);
    when no n is reliable, none is recommended: the curve says no number of events gives a
    reliable assignment. `agreement_macro` (each segment counts the same) and
    `agreement_lowest_segment` show which segments need more history.
    """
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return empty_frame(THRESHOLD_COLUMNS)
    seed = stored.settings.random_state
    counts = study.event_counts()[["user_id", "events"]]
    grid = [n for n in ANALYSIS.threshold_grid]
    pool = counts[counts["events"] >= 2 * grid[0]].sort_values("user_id")
    chosen = seeded_sample(pool, ANALYSIS.threshold_users, seed)
    events = fetch_events(chosen["user_id"].to_numpy())
    events = events.assign(event_time=pd.to_datetime(events["event_time"]))
    events = in_canonical_order(events).reset_index(drop=True)
    marketing_days = set(pd.to_datetime(marketing_calendar["calendar_date"]).dt.date)
    full = features_from_events(events, marketing_days, night_hours, stored.features)
    reference = pd.Series(stored.predict(full), index=full["user_id"].to_numpy())
    history = events.groupby("user_id").size()

    rows = []
    for n in grid:
        users = history.index[history >= 2 * n]
        if len(users) == 0:
            continue
        draws = ANALYSIS.threshold_draws
        part = subsample_events(events[events["user_id"].isin(users)], n, seed + n, draws)
        sub = features_from_events(part, marketing_days, night_hours, stored.features)
        owner = sub["user_id"].to_numpy() // draws
        same = pd.Series(stored.predict(sub) == reference.loc[owner].to_numpy(), index=owner)
        same = same.groupby(level=0).mean()  # each shopper counts once: the share of their draws that agree
        by_segment = same.groupby(reference.loc[same.index].to_numpy()).agg(["mean", "size"])
        big = by_segment[by_segment["size"] >= ANALYSIS.min_segment_users]
        rows.append(
            {
                "min_events": n,
                "users_evaluated": len(same),
                "segments_evaluated": len(big),
                "agreement": float(same.mean()),
                "agreement_macro": float(big["mean"].mean()) if len(big) else np.nan,
                "agreement_lowest_segment": float(big["mean"].min()) if len(big) else np.nan,
                "shoppers_reaching": float((counts["events"] >= n).mean()),
            }
        )
        rows[-1]["reliable_share"] = rows[-1]["shoppers_reaching"] * rows[-1]["agreement"]
        rows[-1]["is_reliable"] = rows[-1]["agreement"] >= ANALYSIS.reliable_agreement
    recommended = recommended_threshold(rows)
    for row in rows:
        row.update(
            model_version=stored.version,
            is_recommended=row["min_events"] == recommended,
            is_current_setting=row["min_events"] == stored.settings.min_events,
            random_seed=seed,
        )
    return typed_frame(rows, THRESHOLD_COLUMNS)


def recommended_threshold(rows: list[dict]) -> int | None:
    """Among the reliable n, the one with the highest reliable share (the smaller n on a tie at 3
    decimals); None when no n is reliable."""
    rows = [r for r in rows if r.get("is_reliable", True)]
    if not rows:
        return None
    best = max(round(r["reliable_share"], 3) for r in rows)
    return min(int(r["min_events"]) for r in rows if round(r["reliable_share"], 3) == best)


