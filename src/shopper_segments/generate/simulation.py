"""The vectorised simulation: sessions, views and the cart/purchase funnel of every shopper.

Users are simulated in chunks on worker threads with numpy only (no Python loop per user, session or
event).  Each chunk's events are kept in compact integer columns, sorted by time and sliced into
the buckets of the files they belong to.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from .base import (
    CART, PURCHASE, REMOVE, VIEW, _DAY, _draw_rows, _EVENT_COLUMNS, _KEY, _KEY_HALF, _lognormal_counts, _mix64,
    _segment_starts, _segmented_cumsum, _WORKERS,
)
from .catalogue import _Catalogue
from .shoppers import _B, _Period, _Population, _TRUTH_OF_BEHAVIOUR, _user_ids

_CHUNK_USERS = 25_000  # fixed, so the output never depends on anything but the arguments


def _simulate(users: int, seed: int, period: _Period, catalogue: _Catalogue, bounds: np.ndarray,
              pool: ThreadPoolExecutor, progress: bool,
              population: _Population) -> tuple[list[list[dict[str, np.ndarray]]], dict, tuple]:
    """Simulate all users in chunks on the worker threads (numpy releases the GIL) and collect
    the chunks in order, so the result does not depend on thread timing.  Each chunk's events,
    already sorted by time, are sliced into the buckets of the files they belong to."""
    buckets: list[list[dict[str, np.ndarray]]] = [[] for _ in range(len(bounds) - 1)]
    session_user: list[np.ndarray] = []
    session_uuid: list[np.ndarray] = []
    truth_types: list[np.ndarray] = []
    hour_cdfs = period.hour_cdfs()
    pending: collections.deque[Future] = collections.deque()

    def collect(chunk: _Chunk) -> None:
        chunk.events["session"] += sum(len(u) for u in session_user)  # chunk-local -> global
        _bucket_by_file(chunk.events, bounds, buckets)
        session_user.append(chunk.session_user)
        session_uuid.append(chunk.session_uuid)
        truth_types.append(_TRUTH_OF_BEHAVIOUR[chunk.archetype])
        bar.update(len(chunk.archetype))

    with tqdm(total=users, unit="user", unit_scale=True, desc="simulate", disable=not progress,
              file=sys.stderr) as bar:
        for index, lo in enumerate(range(0, users, _CHUNK_USERS)):
            rng = np.random.default_rng([seed, 1, index])
            hi = min(users, lo + _CHUNK_USERS)
            pending.append(pool.submit(_simulate_chunk, rng, lo, hi, period, hour_cdfs, catalogue, seed, population))
            if len(pending) >= _WORKERS:  # keep both workers busy, memory bounded
                collect(pending.popleft().result())
        while pending:
            collect(pending.popleft().result())
    sessions = {"user": np.concatenate(session_user), "uuid": np.concatenate(session_uuid)}
    return buckets, sessions, (_user_ids(np.arange(users), seed), np.concatenate(truth_types))


@dataclasses.dataclass
class _Chunk:
    events: dict[str, np.ndarray]  # time, type, product, cents, session (chunk-local)
    session_user: np.ndarray  # global user number per session
    session_uuid: np.ndarray  # (sessions, 36) bytes: the formatted user_session value
    archetype: np.ndarray  # behaviour number per user of the chunk


def _simulate_chunk(rng: np.random.Generator, lo: int, hi: int, period: _Period, hour_cdfs: np.ndarray,
                    catalogue: _Catalogue, seed: int, population: _Population) -> _Chunk:
    """Simulate users lo..hi-1: sessions, views, then the cart / remove / purchase funnel.
    The chunk's events come back sorted by time (ties in generation order)."""
    n_users = hi - lo
    archetype = population.draw(rng, n_users)

    sessions = _simulate_sessions(rng, archetype, period, hour_cdfs)
    views = _simulate_views(rng, archetype, sessions, catalogue, period)
    funnel = _simulate_funnel(rng, archetype, sessions, views, population.logs_removals)

    events = {key: np.concatenate([views[key]] + [f[key] for f in funnel]) for key in _EVENT_COLUMNS}
    _keep_sessions_inside_period(events, len(sessions["user"]), period.seconds)
    order = _time_order(events["time"])
    user = lo + sessions["user"]
    uuid = _session_uuids(user, sessions["number"], seed)  # once per session, not per event
    return _Chunk({k: v[order] for k, v in events.items()}, user, uuid, archetype)


def _simulate_sessions(rng: np.random.Generator, archetype: np.ndarray, period: _Period,
                       hour_cdfs: np.ndarray) -> dict[str, np.ndarray]:
    """Sessions per user (heavy-tailed) and their start second.

    A user's sessions are consecutive points in virtual time (exponential gaps after a random
    anchor, wrapping around), or independent points for archetypes that come back all the time;
    the archetype's profile maps them to real time.
    """
    b = _B
    a = archetype
    count = _lognormal_counts(rng, b["sessions0"][a], b["sessions1"][a], b["sessions2"][a], b["sessions3"][a])
    user = np.repeat(np.arange(len(a), dtype=np.int32), count)
    number = (np.arange(len(user)) - np.repeat(_segment_starts(count), count)).astype(np.int32)
    sa = a[user]

    gap_days = b["return_gap_days"][sa]
    steps = np.where(number == 0, 0.0, rng.exponential(1.0, len(user)) * gap_days / period.days)
    anchor = rng.random(len(a))[user]
    virtual = np.where(gap_days > 0, (anchor + _segmented_cumsum(steps, count)) % 1.0, rng.random(len(user)))

    hour = _draw_rows(hour_cdfs, b["profile"][sa], virtual)
    start = hour * 3600 + rng.integers(0, 3600, len(user))
    return {"user": user, "number": number, "archetype": sa, "start": start.astype(np.int64)}


def _simulate_views(rng: np.random.Generator, archetype: np.ndarray, sessions: dict[str, np.ndarray],
                    catalogue: _Catalogue, period: _Period) -> dict[str, np.ndarray]:
    """View events: how many per session, when, which products and at what price."""
    b = _B
    sa = sessions["archetype"]
    n_sessions = len(sa)
    activity = np.exp(b["activity_sigma"][archetype] * rng.standard_normal(len(archetype)))
    count = _lognormal_counts(rng, b["views0"][sa] * activity[sessions["user"]], b["views1"][sa],
                              b["views2"][sa], b["views3"][sa])
    session = np.repeat(np.arange(n_sessions, dtype=np.int32), count)
    first = _segment_starts(count)
    last = first + count - 1
    ea = sa[session]

    # Seconds between views; long sessions are squeezed below a cap of up to an hour.
    gaps = b["gap_seconds0"][ea] * np.exp(b["gap_seconds1"][ea] * rng.standard_normal(len(session)))
    gaps[first] = 0.0
    offset = _segmented_cumsum(gaps, count)
    cap = 3600.0 * rng.uniform(0.4, 1.0, n_sessions)
    squeeze = np.minimum(1.0, cap / np.maximum(offset[last], 1.0))
    time = sessions["start"][session] + (offset * squeeze[session]).astype(np.int64)

    product, cents, fresh = _pick_products(rng, archetype, sessions, session, count, catalogue, period)
    return {"time": time, "type": np.full(len(session), VIEW, np.int8), "product": product, "cents": cents,
            "session": session, "count": count, "fresh": fresh}


def _pick_products(rng: np.random.Generator, archetype: np.ndarray, sessions: dict[str, np.ndarray],
                   session: np.ndarray, count: np.ndarray, catalogue: _Catalogue,
                   period: _Period) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Product and price (cents) of every view, and the positions of the fresh views.

    Fresh views follow the user's category / brand preferences and price band; revisits go back
    to a product already seen earlier in the same session, at the same price.
    """
    b = _B
    n = len(session)
    first = _segment_starts(count)
    ea = sessions["archetype"][session]
    fresh = rng.random(n) >= b["revisit"][ea]
    fresh[first] = True

    fresh_at = np.flatnonzero(fresh).astype(np.int32)
    products = np.empty(n, dtype=np.int32)
    products[fresh_at] = _fresh_products(rng, archetype, sessions, session[fresh_at], catalogue)
    cents = np.empty(n, dtype=np.int32)
    cents[fresh_at] = _prices(catalogue, products[fresh_at], sessions["start"][session[fresh_at]], period)

    # A revisit copies a uniformly chosen earlier fresh view of its session.
    seen = np.cumsum(fresh)  # fresh views up to and including each view
    seen_at_first = np.repeat(seen[first], count)
    back = np.flatnonzero(~fresh)
    choice = seen_at_first[back] - 1 + (rng.random(len(back)) * (seen[back] - seen_at_first[back] + 1)).astype(np.int64)
    products[back] = products[fresh_at[choice]]
    cents[back] = cents[fresh_at[choice]]
    return products, cents, fresh_at


def _fresh_products(rng: np.random.Generator, archetype: np.ndarray, sessions: dict[str, np.ndarray],
                    session: np.ndarray, catalogue: _Catalogue) -> np.ndarray:
    """Draw products for fresh views from preferred categories (session focus first), from the
    archetype's whole category mix (exploration) or from the user's favourite brands."""
    b = _B
    n_users = len(archetype)
    user = sessions["user"][session]
    a = archetype[user]
    n = len(session)

    # Preferred categories per user, most preferred first; the session has a main one.
    slots = int(b["categories1"].max())
    preferred = _draw_rows(catalogue.category_cdf, np.repeat(archetype, slots).astype(np.int64),
                           rng.random(n_users * slots)).reshape(n_users, slots)
    n_preferred = rng.integers(b["categories0"][archetype], b["categories1"][archetype] + 1)
    main_slot = (n_preferred[sessions["user"]] * rng.random(len(sessions["user"])) ** 2).astype(np.int64)
    other_slot = (n_preferred[user] * rng.random(n) ** 2).astype(np.int64)
    slot = np.where(rng.random(n) < b["focus"][a], main_slot[session], other_slot)
    category = preferred[user, slot]
    explore = np.flatnonzero(rng.random(n) < b["explore"][a])
    category[explore] = _draw_rows(catalogue.category_cdf, a[explore].astype(np.int64), rng.random(len(explore)))
    segment = catalogue.category_segment(category, b["band"][a])

    # Favourite brands (1-3) for brand-loyal shoppers.
    loyal = np.flatnonzero(rng.random(n) < b["brand_loyalty"][a])
    if len(loyal):
        favourites = _draw_rows(catalogue.brand_cdf, np.zeros(n_users * 3, np.int64),
                                rng.random(n_users * 3)).reshape(n_users, 3)
        n_favourites = rng.integers(1, 4, n_users)
        lu = user[loyal]
        pick = (n_favourites[lu] * rng.random(len(loyal)) ** 1.5).astype(np.int64)
        segment[loyal] = catalogue.brand_segment(favourites[lu, pick])
    return catalogue.draw_product(segment, rng.random(n))


def _prices(catalogue: _Catalogue, product: np.ndarray, session_start: np.ndarray, period: _Period) -> np.ndarray:
    """Price in cents: list price with a weekly change of up to +-8% for about half of the
    products and a sale discount on peak days, within +-10% overall.  It depends only on the
    product and the session's start day, so it is constant within a session."""
    day = session_start // _DAY
    epoch_day = (period.start - dt.date(1970, 1, 1)).days
    week = (epoch_day + day) // 7
    h = _mix64((product.astype(np.uint64) << np.uint64(24)) ^ week.astype(np.uint64))
    u1 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2**32
    u2 = (h >> np.uint64(32)).astype(np.float64) / 2**32
    factor = np.where(u1 < 0.5, 1.0, 0.92 + 0.16 * u2)
    on_sale = period.is_peak_day()[day] & (u2 < 0.6)
    factor = np.clip(np.where(on_sale, factor * 0.93, factor), 0.9, 1.1)
    return np.maximum(1, np.rint(catalogue.base_cents[product] * factor)).astype(np.int32)


def _simulate_funnel(rng: np.random.Generator, archetype: np.ndarray, sessions: dict[str, np.ndarray],
                     views: dict[str, np.ndarray], logs_removals: bool = True) -> list[dict[str, np.ndarray]]:
    """Cart, remove_from_cart and purchase events triggered by fresh views of products.

    A cart follows its view within seconds; carted items are bought together at checkout after
    the session's last view, or removed at some point after being carted; a few views lead to a
    purchase without a cart (as in REES46).
    """
    b = _B
    n_users = len(archetype)
    count = views["count"]
    session = views["session"]
    last_view_time = views["time"][_segment_starts(count) + count - 1]

    # Only fresh views (not revisits) can start a cart or a direct purchase; one uniform per view
    # decides between cart, direct purchase and nothing.  Shoppers who came to buy cart the last
    # product they looked at.
    candidates = views["fresh"]
    user = sessions["user"][session[candidates]]
    a = archetype[user]
    spread = b["taste_spread"][archetype]
    cart_taste = np.exp(0.4 * spread * rng.standard_normal(n_users))  # per-user spread around the archetype
    buy_taste = np.exp(0.25 * spread * rng.standard_normal(n_users))
    u = rng.random(len(candidates))
    p_cart = np.minimum(0.95, b["cart"][a] * cart_taste[user])
    p_direct = b["direct_purchase"][a]
    if (b["in_market"][archetype] < 1.0).any():  # never drawn for the planted world: its draws stay the same
        in_market = rng.random(n_users) < b["in_market"][archetype]
        p_cart = np.where(in_market[user], p_cart, 0.0)
        p_direct = np.where(in_market[user], p_direct, 0.0)
    candidate_session = session[candidates]
    last_of_session = np.append(candidate_session[1:] != candidate_session[:-1], True)
    p_cart = np.where(last_of_session, np.maximum(p_cart, b["cart_intent"][a]), p_cart)
    is_cart = u < p_cart
    carts = candidates[is_cart]
    direct = candidates[~is_cart & (u < p_cart + (1.0 - p_cart) * p_direct)]

    # Each cart ends in a purchase, a removal or stays in the cart.
    ca = a[is_cart]
    outcome = rng.random(len(carts))
    p_buy = np.minimum(0.98, b["purchase_after_cart"][ca] * buy_taste[user[is_cart]])
    bought = carts[outcome < p_buy]
    removed_mask = (outcome >= p_buy) & (outcome < p_buy + b["remove_after_cart"][ca])

    cart_time = views["time"][carts] + 1 + _delays(rng, len(carts), median=8.0, sigma=0.9, cap=300)
    checkout = 20 + _delays(rng, len(count), median=60.0, sigma=0.8, cap=900)  # per session
    bought_cart_time = cart_time[outcome < p_buy]
    removed_cart_time = cart_time[removed_mask]
    removed = carts[removed_mask]
    remove_window = np.maximum(last_view_time[session[removed]] - removed_cart_time, 0) + 120
    remove_time = removed_cart_time + 1 + (rng.random(len(removed)) * remove_window).astype(np.int64)
    buy_time = np.maximum(bought_cart_time, last_view_time[session[bought]]) + checkout[session[bought]]
    direct_time = views["time"][direct] + 1 + _delays(rng, len(direct), median=20.0, sigma=0.8, cap=600)

    def derived(source: np.ndarray, when: np.ndarray, kind: int) -> dict[str, np.ndarray]:
        return {"time": when, "type": np.full(len(source), kind, np.int8), "product": views["product"][source],
                "cents": views["cents"][source], "session": session[source]}

    if not logs_removals:  # the item simply stays in the cart (same draws, so nothing else changes)
        removed, remove_time = removed[:0], remove_time[:0]
    return [derived(carts, cart_time, CART), derived(removed, remove_time, REMOVE),
            derived(bought, buy_time, PURCHASE), derived(direct, direct_time, PURCHASE)]


def _delays(rng: np.random.Generator, n: int, *, median: float, sigma: float, cap: int) -> np.ndarray:
    """Lognormal whole seconds, capped so that sessions stay around an hour at most."""
    return np.minimum(median * np.exp(sigma * rng.standard_normal(n)), cap).astype(np.int64)


def _keep_sessions_inside_period(events: dict[str, np.ndarray], n_sessions: int, period_seconds: int) -> None:
    """Shift sessions that would end after the period back, so every session lies inside it."""
    end = np.zeros(n_sessions, dtype=np.int64)
    np.maximum.at(end, events["session"], events["time"])
    shift = np.maximum(end - (period_seconds - 1), 0)
    events["time"] = (events["time"] - shift[events["session"]]).astype(np.int32)
    events["session"] = events["session"].astype(np.int32)


def _time_keys(times: np.ndarray) -> np.ndarray:
    """Unique sort keys (time << 32 | position) for non-negative int32 ``times``: sorted, they
    order by time with ties in original order.  Built in place, because large temporaries are
    costly (page faults) on small VMs."""
    keys = times.astype(_KEY)
    keys <<= np.uint64(32)
    keys.view(_KEY_HALF)[0::2] = np.arange(len(times), dtype=_KEY_HALF)
    return keys


def _key_positions(keys: np.ndarray) -> np.ndarray:
    """The position halves of sorted keys: a permutation (strided view, no copy)."""
    return keys.view(_KEY_HALF)[0::2]


def _time_order(times: np.ndarray) -> np.ndarray:
    """Permutation sorting non-negative int32 ``times``, ties in original order: a two-pass LSD
    radix sort on 16-bit digits (numpy's stable argsort of uint16 is a linear-time radix sort)."""
    by_low = np.argsort((times & 0xFFFF).astype(np.uint16), kind="stable")
    by_high = np.argsort((times[by_low] >> 16).astype(np.uint16), kind="stable")
    return by_low[by_high]


def _bucket_by_file(events: dict[str, np.ndarray], bounds: np.ndarray, buckets: list[list]) -> None:
    """Append slices of the chunk's time-sorted events to the buckets of their files."""
    edges = np.searchsorted(events["time"], bounds)
    for f, bucket in enumerate(buckets):
        if edges[f + 1] > edges[f]:
            bucket.append({k: v[edges[f]:edges[f + 1]] for k, v in events.items()})


# --------------------------------------------------------------------------------------------------
# One file's events in time order, and session ids
# --------------------------------------------------------------------------------------------------


def _file_events(bucket: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One file's events and the permutation that sorts them by time (ties in chunk order, so the
    output is deterministic).  The pieces are sorted runs, which the stable sort merges quickly;
    rows are gathered through the permutation batch by batch in the writer threads."""
    if not bucket:
        return {k: np.empty(0, np.int32) for k in _EVENT_COLUMNS}, np.empty(0, _KEY_HALF)
    columns = {k: np.concatenate([piece[k] for piece in bucket]) for k in bucket[0]}
    keys = _time_keys(columns["time"])
    keys.sort(kind="stable")
    return columns, _key_positions(keys)


_HEX_PAIRS = np.array([ord(f"{b:02x}"[0]) | ord(f"{b:02x}"[1]) << 8 for b in range(256)], dtype=np.uint16)
_UUID_GROUPS = ((0, 0), (9, 8), (14, 12), (19, 16), (24, 20))  # (text offset, hex digit offset) of 8-4-4-4-12


def _session_uuids(user: np.ndarray, number: np.ndarray, seed: int) -> np.ndarray:
    """Lowercase 8-4-4-4-12 session ids as an (n, 36) byte matrix.  The first 64 bits are a
    bijective hash of (user, session number), so ids are unique; the rest depends on the seed."""
    key = (user.astype(np.uint64) << np.uint64(20)) | number.astype(np.uint64)
    words = np.empty((len(key), 2), np.uint64)
    words[:, 0] = _mix64(key ^ _mix64(np.array([seed % 2**64], np.uint64))[0])
    words[:, 1] = _mix64(words[:, 0] + np.uint64(0x9E3779B97F4A7C15))
    digits = _HEX_PAIRS[words.view(np.uint8).reshape(-1, 16)].view(np.uint8).reshape(-1, 32)
    out = np.full((len(key), 36), ord("-"), np.uint8)
    for (dst, src), width in zip(_UUID_GROUPS, (8, 4, 4, 4, 12), strict=True):
        out[:, dst:dst + width] = digits[:, src:src + width]
    return out
