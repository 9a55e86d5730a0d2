"""Who the generated shoppers are and when they shop.

The archetypes and background shoppers of each world and flavour (docs/calibration.md) as
behaviour parameters, their time-of-use profiles, the simulated period with its sale days, and the
population: which behaviour each shopper follows and its 9-digit user id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterable

import numpy as np

from .base import _DAY

ARCHETYPES: tuple[str, ...] = (
    "window_shopper",
    "decisive_buyer",
    "cart_abandoner",
    "premium_researcher",
    "bargain_hunter",
    "loyal_regular",
)

BACKGROUND = "background"  # truth label of a shopper drawn from the store-wide marginals
TRUTH_LABELS: tuple[str, ...] = (*ARCHETYPES, BACKGROUND)

# What the generated shoppers are (docs/calibration.md):
# - "calibrated": the shape of the real October 2019 multi-category file (events, sessions and
#   buyers per shopper, the funnel), with a minority of planted archetypes (CALIBRATED_ARCHETYPE_SHARE,
#   in equal parts) among background shoppers drawn from the store-wide marginals;
# - "no_segments": background shoppers only: no structure to find;
# - "planted": every shopper is an archetype (the original demo; ~81 events per shopper).
WORLDS = ("calibrated", "no_segments", "planted")
# The store: "multi_category" logs no remove_from_cart (as the real electronics-heavy store);
# "cosmetics" logs them (~20 % of its events, as REES46's cosmetics store).
FLAVOURS = ("multi_category", "cosmetics")
CALIBRATED_ARCHETYPE_SHARE = 0.15
_CALIBRATED_SUFFIX = "@calibrated"  # behaviour key of an archetype as the calibrated world draws it

_MAX_DAYS = 20_000  # event times are int32 seconds since the start
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_USER_ID_SPAN = 500_000_000  # user ids are 9-digit numbers in [500_000_000, 1_000_000_000)

# Price bands as ranges of a product's price rank within its category (0 = cheapest, 1 = dearest).
_ALL, _CHEAP, _MID, _PREMIUM = range(4)
_BANDS = ((0.0, 1.0), (0.0, 0.3), (0.25, 0.75), (0.7, 1.0))

# --------------------------------------------------------------------------------------------------
# Archetype behaviour
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Behaviour:
    """How one archetype browses; counts are (lognormal median, sigma, min, max)."""

    share: float
    sessions: tuple[float, float, int, int]
    views: tuple[float, float, int, int]  # views per session
    activity_sigma: float  # per-user lognormal factor on views per session: heavy tail across users
    return_gap_days: float  # mean days between a user's sessions; 0 = sessions spread independently
    profile: str  # time-of-use profile, key of _PROFILES
    gap_seconds: tuple[float, float]  # lognormal median and sigma of seconds between two views
    categories: tuple[int, int]  # number of preferred categories per user (min, max)
    focus: float  # chance a view stays in the session's main category
    explore: float  # chance a view ignores the preferences altogether
    band: int  # price band of viewed products
    top_levels: tuple[str, ...] = ()  # allowed top-level categories (empty = all)
    min_price_ceiling: float = 0.0  # only categories whose price range reaches this
    brand_loyalty: float = 0.0  # chance a view is drawn among the user's preferred brands
    revisit: float = 0.2  # chance a view returns to a product already seen in the session
    cart: float = 0.0  # chance a fresh view of a product leads to a cart
    cart_intent: float = 0.0  # chance the last product a session looks at is carted (came to buy)
    purchase_after_cart: float = 0.0
    remove_after_cart: float = 0.0
    direct_purchase: float = 0.0  # chance a view leads to a purchase without a cart event
    in_market: float = 1.0  # share of users who may cart or buy at all (the others only look)
    store_mix: tuple[float, float] = ()  # (electronics, uncoded) weights towards the real sample's mix; see _store_mix
    taste_spread: float = 1.0  # scales the per-user lognormal spread of the cart and purchase tastes


# The planted archetypes (rates were tuned so the overall mix lands near REES46's 96% views,
# 2% carts, 1.7% purchases and 0.4% removals):
# - window_shopper: long sessions over many categories, almost never carts, no purchases;
# - decisive_buyer: 1-3 short sessions in 1-2 categories, mid prices, carts and buys what it came for;
# - cart_abandoner: carts 15-25% of views, removes ~40% of carts, rarely buys;
# - premium_researcher: dear electronics / computers only, minutes between views, keeps coming back
#   to the same few products, occasionally buys;
# - bargain_hunter: cheapest products of many categories, at night and on sale days; comes back at
#   least twice (a single daytime visit outside the sales shows none of these habits, so it could
#   not be told from a window shopper by its behaviour);
# - loyal_regular: 10-30 sessions over the whole period, sticks to 1-3 brands, buys every 2-3 sessions.
_BEHAVIOURS: dict[str, _Behaviour] = {
    "window_shopper": _Behaviour(
        share=0.35, sessions=(2.0, 0.9, 1, 60), views=(18.0, 0.9, 3, 600), activity_sigma=0.6,
        return_gap_days=4.0, profile="default", gap_seconds=(25.0, 1.0), categories=(5, 12),
        focus=0.5, explore=0.3, band=_ALL, revisit=0.25,
        cart=0.0012, purchase_after_cart=0.03, remove_after_cart=0.5,
    ),
    "decisive_buyer": _Behaviour(
        share=0.15, sessions=(1.5, 0.5, 1, 3), views=(3.5, 0.35, 2, 6), activity_sigma=0.2,
        return_gap_days=1.0, profile="default", gap_seconds=(15.0, 0.8), categories=(1, 2),
        focus=0.85, explore=0.02, band=_MID, revisit=0.1,
        cart=0.15, cart_intent=0.8, purchase_after_cart=0.85, remove_after_cart=0.05, direct_purchase=0.06,
    ),
    "cart_abandoner": _Behaviour(
        share=0.15, sessions=(3.0, 0.5, 1, 30), views=(5.0, 0.6, 3, 150), activity_sigma=0.4,
        return_gap_days=2.0, profile="default", gap_seconds=(20.0, 0.9), categories=(2, 4),
        focus=0.7, explore=0.1, band=_ALL, revisit=0.3,
        cart=0.2, purchase_after_cart=0.06, remove_after_cart=0.42, direct_purchase=0.002,
    ),
    "premium_researcher": _Behaviour(
        share=0.10, sessions=(4.0, 0.6, 1, 40), views=(19.0, 0.7, 2, 300), activity_sigma=0.5,
        return_gap_days=2.5, profile="default", gap_seconds=(100.0, 0.7), categories=(2, 3),
        focus=0.8, explore=0.1, band=_PREMIUM, top_levels=("electronics", "computers"),
        min_price_ceiling=500.0, revisit=0.55,
        cart=0.01, purchase_after_cart=0.6, remove_after_cart=0.15, direct_purchase=0.003,
    ),
    "bargain_hunter": _Behaviour(
        share=0.12, sessions=(5.0, 0.5, 2, 40), views=(9.0, 0.7, 1, 200), activity_sigma=0.4,
        return_gap_days=1.0, profile="night_deals", gap_seconds=(20.0, 0.9), categories=(5, 10),
        focus=0.4, explore=0.3, band=_CHEAP, revisit=0.2,
        cart=0.022, purchase_after_cart=0.75, remove_after_cart=0.1, direct_purchase=0.02,
    ),
    "loyal_regular": _Behaviour(
        share=0.13, sessions=(14.0, 0.3, 10, 30), views=(8.0, 0.5, 2, 60), activity_sigma=0.3,
        return_gap_days=0.0, profile="regular", gap_seconds=(30.0, 0.9), categories=(2, 4),
        focus=0.6, explore=0.05, band=_ALL, brand_loyalty=0.85, revisit=0.3,
        cart=0.008, cart_intent=0.25, purchase_after_cart=0.9, remove_after_cart=0.05, direct_purchase=0.02,
    ),
}
# Background shoppers: no habit of their own.  Categories, brands and prices follow the store-wide
# traffic (the catalogue's weights, close to the real sample's marginals), visits and their depth
# are heavy-tailed, and the rates are set so that the calibrated world as a whole (its 15 % of
# archetypes included) lands on the real file's figures (docs/calibration.md).
_BEHAVIOURS["background"] = _Behaviour(
    share=0.0, sessions=(1.5, 1.05, 1, 250), views=(1.2, 1.0, 1, 500), activity_sigma=0.5,
    return_gap_days=3.0, profile="default", gap_seconds=(30.0, 1.0), categories=(1, 4),
    focus=0.6, explore=0.35, band=_ALL, revisit=0.25,
    cart=0.042, purchase_after_cart=0.32, remove_after_cart=0.0, direct_purchase=0.012, in_market=0.28,
    store_mix=(0.40, 1.2),
)
# The cosmetics store's background shoppers cart much more and take a lot out of the cart again
# (and browse a little more than the multi-category store's, so removals stay a fifth of the events
# beside the calibrated world's archetypes).
_BEHAVIOURS["background_cosmetics"] = dataclasses.replace(
    _BEHAVIOURS["background"], cart=0.95, purchase_after_cart=0.08, remove_after_cart=0.9, direct_purchase=0.0,
    in_market=1.0, views=(2.0, 1.0, 1, 500),
)
# With no archetypes to carry the heavy users, the world with no segments needs busier background
# shoppers to keep the real file's shape (the same targets, docs/calibration.md).
_BEHAVIOURS["background_alone"] = dataclasses.replace(
    _BEHAVIOURS["background"], sessions=(1.6, 1.05, 1, 250), views=(2.5, 1.0, 1, 500), in_market=1.0,
    cart=0.025, purchase_after_cart=0.45, direct_purchase=0.01, store_mix=(0.92, 1.05),
)
_BEHAVIOURS["background_alone_cosmetics"] = dataclasses.replace(
    _BEHAVIOURS["background_cosmetics"], sessions=(1.6, 1.05, 1, 250), views=(2.5, 1.0, 1, 500), store_mix=(0.92, 1.05),
)
# The calibrated world's archetypes: the same habits, as tighter groups.  Drawn as widely as the
# planted world's, they sat in the tails of the background continuum rather than forming groups
# of their own (docs/model.md, "Realistic worlds"): every spread (visits per shopper, views per
# visit, the shopper's activity, cart and purchase tastes) is CALIBRATED_SPREAD of its own, and the
# habits the personas are defined by are marked more plainly.
CALIBRATED_SPREAD = 0.3
CALIBRATED_VIEWS = 0.7  # views per visit, relative to the planted world's (the real file's events per shopper)


def _same_mean_median(median: float, sigma: float, tighter_sigma: float) -> float:
    """The lognormal median that keeps the mean when sigma shrinks (mean = median * exp(sigma^2 / 2))."""
    return median * float(np.exp((sigma**2 - tighter_sigma**2) / 2))


def _tighter(behaviour: _Behaviour) -> _Behaviour:
    """The behaviour with every spread CALIBRATED_SPREAD of its own (means kept), then CALIBRATED_VIEWS
    of its views per visit."""
    (s_median, s_sigma, *s_range), (v_median, v_sigma, *v_range) = behaviour.sessions, behaviour.views
    s_tight, v_tight = s_sigma * CALIBRATED_SPREAD, v_sigma * CALIBRATED_SPREAD
    activity_tight = behaviour.activity_sigma * CALIBRATED_SPREAD
    v_median = _same_mean_median(v_median, behaviour.activity_sigma, activity_tight)  # activity multiplies views
    return dataclasses.replace(
        behaviour,
        sessions=(_same_mean_median(s_median, s_sigma, s_tight), s_tight, *s_range),
        views=(CALIBRATED_VIEWS * _same_mean_median(v_median, v_sigma, v_tight), v_tight, *v_range),
        activity_sigma=activity_tight, taste_spread=CALIBRATED_SPREAD)


_CALIBRATED_HABITS = {
    "window_shopper": {"categories": (9, 12), "focus": 0.3, "explore": 0.4},  # wanders over many categories
    "decisive_buyer": {"sessions": (3.0, 0.5, 2, 6), "views": (2.0, 0.35, 1, 3)},  # few, shallow visits
    "cart_abandoner": {"purchase_after_cart": 0.02},  # hardly ever buys what it carts
    # Most visits at night.  Bargain hunters and loyal regulars also buy without a cart half as
    # often: with 15 % of archetypes, the month keeps the real file's purchase share.
    "bargain_hunter": {"profile": "night_deals_strong", "direct_purchase": 0.01},
    "loyal_regular": {"direct_purchase": 0.01},
}
for _name in ARCHETYPES:
    _habits = dataclasses.replace(_BEHAVIOURS[_name], **_CALIBRATED_HABITS.get(_name, {}))
    _BEHAVIOURS[_name + _CALIBRATED_SUFFIX] = _tighter(_habits)
_BEHAVIOUR_KEYS = tuple(_BEHAVIOURS)
assert _BEHAVIOUR_KEYS[:len(ARCHETYPES)] == ARCHETYPES
_CALIBRATED_ARCHETYPES = np.array([_BEHAVIOUR_KEYS.index(a + _CALIBRATED_SUFFIX) for a in ARCHETYPES], dtype=np.int8)
_BACKGROUND_INDEX = {  # (world, flavour) -> behaviour number of its background shoppers
    (world, flavour): _BEHAVIOUR_KEYS.index(
        "background" + ("_alone" if world == "no_segments" else "") + ("_cosmetics" if flavour == "cosmetics" else ""))
    for world in ("calibrated", "no_segments") for flavour in ("multi_category", "cosmetics")
}
# Behaviour number -> truth label number (every background behaviour is "background"; a calibrated
# archetype is its archetype).
_TRUTH_OF_BEHAVIOUR = np.array(
    [TRUTH_LABELS.index(key if key in ARCHETYPES else BACKGROUND)
     for key in (k.removesuffix(_CALIBRATED_SUFFIX) for k in _BEHAVIOUR_KEYS)],
    dtype=np.int8)

# Relative activity per UTC hour: quiet 01:00-06:00, busiest in the (European) evening.
_HOURLY = np.array(
    [0.35, 0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.8, 0.9, 1.0, 1.0, 1.0,
     1.05, 1.1, 1.2, 1.35, 1.5, 1.6, 1.6, 1.45, 1.2, 0.9, 0.65, 0.5]
)
_NIGHT_HOURLY = np.where(np.arange(24) < 6, 4.0, _HOURLY)  # night owls: most sessions before 06:00
_STRONG_NIGHT_HOURLY = np.where(np.arange(24) < 6, 12.0, _HOURLY)  # about three quarters before 06:00


@dataclasses.dataclass(frozen=True)
class _Profile:
    """When an archetype is active: hour-of-day weights, weekday weights (Mon..Sun) and the
    multiplier of its activity on peak (sale) days."""

    hourly: np.ndarray
    weekday: tuple[float, ...]
    peak: float


_PROFILES = {
    "default": _Profile(_HOURLY, (1.0, 1.0, 1.0, 1.0, 0.95, 1.05, 1.1), peak=2.4),
    "night_deals": _Profile(_NIGHT_HOURLY, (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0), peak=12.0),
    "regular": _Profile(_HOURLY, (1.0, 1.0, 1.0, 1.0, 1.0, 1.3, 1.4), peak=1.5),
    "night_deals_strong": _Profile(_STRONG_NIGHT_HOURLY, (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0), peak=12.0),
}
_PROFILE_NAMES = tuple(_PROFILES)


# --------------------------------------------------------------------------------------------------
# Period, calendar and time-of-use profiles
# --------------------------------------------------------------------------------------------------


def _black_friday_weekend(year: int) -> list[dt.date]:
    """Black Friday (the day after the fourth Thursday of November) through Cyber Monday."""
    first = dt.date(year, 11, 1)
    thanksgiving = first + dt.timedelta(days=(3 - first.weekday()) % 7 + 21)
    return [thanksgiving + dt.timedelta(days=k) for k in range(1, 5)]


def _as_date(value: str | dt.date) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


@dataclasses.dataclass(frozen=True)
class _Period:
    """The simulated days; times are stored as int seconds since ``start`` 00:00 UTC."""

    start: dt.date
    days: int
    peak_days: tuple[dt.date, ...]

    @classmethod
    def create(cls, start: str | dt.date, days: int, peak_days: Iterable[str | dt.date] | None) -> _Period:
        if not 1 <= days <= _MAX_DAYS:
            raise ValueError(f"days must be between 1 and {_MAX_DAYS}")
        first = _as_date(start)
        last = first + dt.timedelta(days=days - 1)
        if peak_days is None:
            peaks = [d for y in range(first.year, last.year + 1) for d in _black_friday_weekend(y)]
        else:
            peaks = [_as_date(d) for d in peak_days]
        return cls(first, days, tuple(sorted({d for d in peaks if first <= d <= last})))

    @property
    def seconds(self) -> int:
        return self.days * _DAY

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=k) for k in range(self.days)]

    def is_peak_day(self) -> np.ndarray:
        return np.array([d in self.peak_days for d in self.dates()])

    def file_slots(self, split: str, suffix: str) -> list[tuple[str, int, int]]:
        """(file name, first second, end second) of each output file, in time order."""
        slots: list[tuple[str, int, int]] = []
        for k, d in enumerate(self.dates()):
            name = f"{d:%Y-%m-%d}{suffix}" if split == "day" else f"{d.year}-{_MONTH_ABBR[d.month - 1]}{suffix}"
            if slots and slots[-1][0] == name:
                slots[-1] = (name, slots[-1][1], (k + 1) * _DAY)
            else:
                slots.append((name, k * _DAY, (k + 1) * _DAY))
        return slots

    def hour_cdfs(self) -> np.ndarray:
        """Cumulative share of activity per hour of the period, one row per profile.

        Sessions are placed by drawing a point in "virtual time" (uniform on [0, 1)) and mapping it
        through this inverse CDF, so any clustering of a user's sessions in virtual time survives
        while the overall volume follows the daily, weekly and sale-day rhythm exactly.
        """
        weekday = np.array([d.weekday() for d in self.dates()])
        peak = self.is_peak_day()
        rows = []
        for name in _PROFILE_NAMES:
            profile = _PROFILES[name]
            daily = np.asarray(profile.weekday)[weekday] * np.where(peak, profile.peak, 1.0)
            weights = (daily[:, None] * profile.hourly[None, :]).ravel()
            cumulative = np.cumsum(weights)
            rows.append(cumulative / cumulative[-1])
        return np.stack(rows)


# --------------------------------------------------------------------------------------------------
# Population: which behaviour each shopper follows, and its user id
# --------------------------------------------------------------------------------------------------


def _behaviour_table() -> dict[str, np.ndarray]:
    """Behaviour parameters as arrays indexed by archetype number (for vectorised lookups)."""
    table: dict[str, np.ndarray] = {}
    rows = [_BEHAVIOURS[a] for a in _BEHAVIOUR_KEYS]
    for field in dataclasses.fields(_Behaviour):
        values = [getattr(b, field.name) for b in rows]
        if field.name in ("sessions", "views", "gap_seconds", "categories"):
            for k, column in enumerate(zip(*values, strict=True)):
                table[f"{field.name}{k}"] = np.array(column)
        elif field.name == "profile":
            table["profile"] = np.array([_PROFILE_NAMES.index(v) for v in values])
        elif field.name not in ("top_levels", "min_price_ceiling", "store_mix"):  # used by the catalogue only
            table[field.name] = np.array(values)
    return table


_B = _behaviour_table()


@functools.lru_cache(maxsize=8)
def _user_id_mapping(seed: int) -> tuple[int, int]:
    """Multiplier (odd, not a multiple of 5, hence coprime to 5e8) and shift of the user id map."""
    rng = np.random.default_rng([seed, 2])
    multiplier = int(rng.integers(100_000_000, _MAX_USER_ID_SPAN)) | 1
    while multiplier % 5 == 0:
        multiplier += 2
    return multiplier, int(rng.integers(0, _MAX_USER_ID_SPAN))


def _user_ids(users: np.ndarray, seed: int) -> np.ndarray:
    """Unique, random-looking 9-digit ids: an affine bijection of the user number modulo 5e8,
    so chunks and writer threads need no coordination to agree on them."""
    multiplier, shift = _user_id_mapping(seed)
    return 500_000_000 + (users.astype(np.int64) * multiplier + shift) % _MAX_USER_ID_SPAN


@dataclasses.dataclass(frozen=True)
class _Population:
    """Who the shoppers are: the world (see WORLDS) and the store's flavour (see FLAVOURS)."""

    world: str
    flavour: str

    @property
    def logs_removals(self) -> bool:
        """The real multi-category file has no remove_from_cart; the planted demo always had them."""
        return self.flavour == "cosmetics" or self.world == "planted"

    def draw(self, rng: np.random.Generator, n_users: int) -> np.ndarray:
        """The behaviour number of each user."""
        if self.world == "planted":
            shares = np.array([_BEHAVIOURS[a].share for a in ARCHETYPES])
            return rng.choice(len(ARCHETYPES), size=n_users, p=shares / shares.sum()).astype(np.int8)
        behaviour = np.full(n_users, _BACKGROUND_INDEX[self.world, self.flavour], dtype=np.int8)
        if self.world == "calibrated":
            planted = rng.random(n_users) < CALIBRATED_ARCHETYPE_SHARE
            behaviour[planted] = _CALIBRATED_ARCHETYPES[rng.integers(0, len(ARCHETYPES), int(planted.sum()))]
        return behaviour
