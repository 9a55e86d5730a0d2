"""Generate realistic demo clickstream files in the REES46 e-commerce format.

Why this exists: the real REES46 files are multi-gigabyte downloads that tests and CI cannot fetch,
and they carry no ground truth.  This module writes files with exactly the same layout (header,
column order, number and time formats, empty fields) and plants six shopper archetypes whose true
labels are written next to the events, so the segmentation pipeline can be tested, validated against
known labels and benchmarked on data of any size.

How it stays fast (about 1.7M events/s uncompressed, 1.2M/s gzipped on 2 cores at 40M events):
users are simulated in chunks on two threads with vectorised numpy only (no Python loop per user,
session or event).  Each chunk's events are kept in compact integer columns, sorted by time and
sliced per output file; a file's sorted runs are then merged and encoded in blocks by worker threads
(pyarrow's CSV writer and zlib release the GIL).  Strings are never built per event in Python:
timestamps and session ids are gathered from fixed-width byte tables, categories and brands are
dictionary columns, prices are decimals built straight from integer cents.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import functools
import json
import pathlib
import sys
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from tqdm import tqdm

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
COLUMNS = tuple(HEADER.split(","))
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
VIEW, CART, REMOVE, PURCHASE = range(4)

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
CALIBRATED_ARCHETYPE_SHARE = 0.08

TRUTH_DIR = "truth"
TRUTH_FILE = "user_archetypes.csv"
MANIFEST_FILE = "generation.json"
# Bump whenever the output for the same arguments changes, so cached generations are rebuilt.
FORMAT_VERSION = 3

_CHUNK_USERS = 25_000  # fixed, so the output never depends on anything but the arguments
_BATCH_ROWS = 250_000  # rows per encoded CSV block; bounds memory of the writer threads
_GZIP_LEVEL = 1  # fastest zlib level: files are scratch data, speed matters more than size
_WORKERS = 2
_DAY = 86_400
_MAX_DAYS = 20_000  # event times are int32 seconds since the start
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_USER_ID_SPAN = 500_000_000  # user ids are 9-digit numbers in [500_000_000, 1_000_000_000)
_EVENT_COLUMNS = ("time", "type", "product", "cents", "session")  # compact in-memory event columns
_KEY, _KEY_HALF = np.dtype("<u8"), np.dtype("<u4")  # explicit little-endian: low half = position

# --------------------------------------------------------------------------------------------------
# Catalogue specification
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _CategorySpec:
    """One leaf category: real REES46 code (empty for the uncoded ones), price range in dollars,
    share of traffic (relative weight), brands by popularity and share of products without a brand."""

    code: str
    low: float
    high: float
    weight: float
    brands: str
    unbranded: float = 0.0


# Weights follow the real traffic mix (smartphones dominate); the uncoded entries stand in for the
# REES46 categories that have a category_id but no category_code (cosmetics, perfume, tyres, ...).
_CATEGORIES: tuple[_CategorySpec, ...] = (
    _CategorySpec("electronics.smartphone", 100, 1000, 24.0,
                  "samsung apple xiaomi huawei oppo vivo nokia meizu honor realme"),
    _CategorySpec("electronics.clocks", 20, 900, 3.0, "apple samsung casio garmin xiaomi huawei fossil tissot", 0.15),
    _CategorySpec("electronics.video.tv", 120, 2000, 2.6, "samsung lg sony xiaomi philips haier artel"),
    _CategorySpec("electronics.audio.headphone", 20, 200, 2.4, "apple samsung sony jbl xiaomi sennheiser huawei", 0.15),
    _CategorySpec("electronics.tablet", 80, 1200, 0.8, "apple samsung huawei lenovo xiaomi"),
    _CategorySpec("electronics.audio.acoustic", 30, 600, 0.4, "jbl sony samsung yamaha sven", 0.05),
    _CategorySpec("electronics.audio.subwoofer", 20, 300, 0.4, "pioneer kicx jbl sony", 0.05),
    _CategorySpec("electronics.telephone", 7, 80, 0.6, "panasonic nokia texet philips", 0.05),
    _CategorySpec("electronics.camera.photo", 150, 2000, 0.3, "canon nikon sony fujifilm"),
    _CategorySpec("electronics.camera.video", 100, 600, 0.2, "sony gopro panasonic xiaomi"),
    _CategorySpec("computers.notebook", 300, 1500, 3.0, "acer lenovo hp asus apple dell msi xiaomi"),
    _CategorySpec("computers.desktop", 200, 2500, 0.7, "acer hp lenovo apple asus", 0.15),
    _CategorySpec("computers.peripherals.monitor", 90, 800, 0.3, "samsung lg acer aoc dell"),
    _CategorySpec("computers.peripherals.printer", 60, 600, 0.2, "hp canon epson brother"),
    _CategorySpec("computers.peripherals.mouse", 4, 120, 0.2, "logitech a4tech razer defender", 0.1),
    _CategorySpec("computers.peripherals.keyboard", 7, 110, 0.15, "logitech a4tech razer defender", 0.1),
    _CategorySpec("computers.components.videocards", 60, 1500, 0.35, "msi asus gigabyte palit"),
    _CategorySpec("computers.components.hdd", 25, 350, 0.2, "seagate wd toshiba samsung"),
    _CategorySpec("computers.components.memory", 17, 130, 0.15, "kingston samsung crucial"),
    _CategorySpec("appliances.kitchen.washer", 150, 900, 1.9, "samsung lg bosch indesit beko artel"),
    _CategorySpec("appliances.kitchen.refrigerators", 150, 950, 2.0, "samsung lg bosch indesit beko artel haier"),
    _CategorySpec("appliances.environment.vacuum", 30, 800, 1.9, "samsung bosch philips redmond vitek xiaomi", 0.1),
    _CategorySpec("appliances.environment.air_heater", 10, 250, 1.2, "polaris ballu timberk vitek", 0.3),
    _CategorySpec("appliances.kitchen.microwave", 45, 400, 0.5, "samsung lg midea bosch"),
    _CategorySpec("appliances.kitchen.kettle", 10, 200, 0.4, "tefal philips redmond bosch polaris vitek", 0.05),
    _CategorySpec("appliances.kitchen.blender", 10, 150, 0.4, "philips bosch redmond moulinex", 0.05),
    _CategorySpec("appliances.kitchen.meat_grinder", 25, 275, 0.6, "moulinex bosch redmond polaris", 0.05),
    _CategorySpec("appliances.kitchen.hood", 45, 500, 0.3, "elikor lex krona bosch", 0.1),
    _CategorySpec("appliances.kitchen.dishwasher", 240, 620, 0.2, "bosch electrolux indesit midea"),
    _CategorySpec("appliances.iron", 10, 190, 0.5, "philips tefal braun polaris", 0.05),
    _CategorySpec("appliances.personal.hair_cutter", 8, 70, 0.2, "philips moser braun scarlett vitek"),
    _CategorySpec("appliances.personal.scales", 8, 45, 0.2, "redmond scarlett galaxy polaris", 0.1),
    _CategorySpec("appliances.sewing_machine", 70, 900, 0.3, "janome brother singer"),
    _CategorySpec("appliances.environment.water_heater", 30, 640, 0.4, "ariston thermex aqua electrolux"),
    _CategorySpec("appliances.environment.air_conditioner", 130, 900, 0.35, "samsung lg artel midea", 0.05),
    _CategorySpec("furniture.living_room.sofa", 240, 1500, 0.7, "brw", 0.75),
    _CategorySpec("furniture.living_room.cabinet", 100, 500, 0.8, "brw lucente", 0.6),
    _CategorySpec("furniture.bedroom.bed", 100, 1000, 0.6, "brw askona", 0.6),
    _CategorySpec("furniture.kitchen.table", 100, 790, 0.3, "brw", 0.7),
    _CategorySpec("furniture.living_room.chair", 100, 490, 0.2, "brw", 0.7),
    _CategorySpec("apparel.shoes", 25, 150, 1.3, "nike adidas puma respect rieker", 0.3),
    _CategorySpec("apparel.shoes.keds", 25, 150, 1.0, "nike adidas puma respect vans", 0.3),
    _CategorySpec("apparel.shoes.sandals", 15, 65, 0.2, "respect rieker", 0.4),
    _CategorySpec("apparel.costume", 38, 150, 0.15, "adidas nike", 0.6),
    _CategorySpec("apparel.tshirt", 10, 50, 0.3, "adidas nike puma", 0.5),
    _CategorySpec("kids.toys", 5, 60, 0.3, "lego hasbro mattel", 0.35),
    _CategorySpec("kids.dolls", 5, 60, 0.15, "mattel hasbro", 0.35),
    _CategorySpec("kids.carriage", 60, 640, 0.45, "chicco peg-perego", 0.4),
    _CategorySpec("kids.fmcg.diapers", 3, 17, 0.1, "pampers huggies", 0.1),
    _CategorySpec("construction.tools.drill", 20, 400, 0.45, "bosch makita dewalt interskol", 0.05),
    _CategorySpec("construction.tools.saw", 50, 600, 0.35, "bosch makita interskol", 0.05),
    _CategorySpec("construction.tools.light", 3, 75, 0.2, "gauss philips", 0.5),
    _CategorySpec("construction.tools.welding", 55, 800, 0.25, "resanta svarog", 0.1),
    _CategorySpec("construction.tools.generator", 30, 700, 0.15, "huter denzel elenberg", 0.1),
    _CategorySpec("auto.accessories.player", 25, 300, 1.4, "pioneer kenwood sony alpine", 0.25),
    _CategorySpec("auto.accessories.alarm", 40, 900, 0.8, "starline pandora", 0.05),
    _CategorySpec("auto.accessories.videoregister", 30, 300, 0.45, "xiaomi neoline artway", 0.1),
    _CategorySpec("sport.bicycle", 80, 1500, 0.5, "stels stern forward", 0.3),
    _CategorySpec("sport.ski", 40, 400, 0.1, "atomic fischer", 0.3),
    _CategorySpec("accessories.bag", 5, 80, 0.6, "samsonite wenger", 0.5),
    _CategorySpec("accessories.wallet", 10, 90, 0.15, "wenger", 0.6),
    _CategorySpec("accessories.umbrella", 5, 40, 0.1, "", 1.0),
    _CategorySpec("stationery.cartrige", 7, 40, 0.1, "hp canon epson", 0.3),
    _CategorySpec("medicine.tools.tonometer", 20, 90, 0.1, "omron microlife", 0.1),
    _CategorySpec("country_yard.cultivator", 100, 600, 0.05, "huter champion", 0.2),
    _CategorySpec("country_yard.lawn_mower", 80, 700, 0.05, "huter champion makita", 0.2),
    # uncoded categories (empty category_code in the real data as well)
    _CategorySpec("", 3, 60, 11.0, "estel kapous lovely loreal nivea concept matrix shiseido", 0.3),  # cosmetics
    _CategorySpec("", 20, 200, 6.0, "creed dior chanel lancome givenchy shiseido"),  # perfume
    _CategorySpec("", 30, 300, 4.0, "cordiant nokian yokohama michelin bridgestone", 0.1),  # tyres
    _CategorySpec("", 30, 800, 3.0, "sokolov", 0.6),  # jewellery
    _CategorySpec("", 2, 40, 5.0, "", 1.0),  # household goods
    _CategorySpec("", 5, 80, 3.0, "luminarc tefal oasis", 0.5),  # tableware
    _CategorySpec("", 3, 30, 4.0, "samsung apple xiaomi", 0.85),  # phone cases and cables
    _CategorySpec("", 8, 150, 3.0, "lego", 0.5),  # games and hobby
)

_PREMIUM_BRANDS = ("apple", "sony", "bosch", "canon", "nikon", "garmin", "tissot", "sennheiser", "dior", "chanel",
                   "creed", "lancome", "michelin", "samsonite", "dell", "makita", "lego")

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
# are heavy-tailed, and the rates are set so that the calibrated world as a whole (archetypes
# included) lands on the real file's figures (docs/calibration.md).
_BEHAVIOURS["background"] = _Behaviour(
    share=0.0, sessions=(1.5, 1.05, 1, 250), views=(1.5, 1.0, 1, 500), activity_sigma=0.5,
    return_gap_days=3.0, profile="default", gap_seconds=(30.0, 1.0), categories=(1, 4),
    focus=0.6, explore=0.35, band=_ALL, revisit=0.25,
    cart=0.042, purchase_after_cart=0.45, remove_after_cart=0.0, direct_purchase=0.017, in_market=0.45,
    store_mix=(0.65, 1.2),
)
# The cosmetics store's background shoppers cart much more and take a lot out of the cart again.
_BEHAVIOURS["background_cosmetics"] = dataclasses.replace(
    _BEHAVIOURS["background"], cart=0.95, purchase_after_cart=0.08, remove_after_cart=0.9, direct_purchase=0.0,
    in_market=1.0,
)
# With no archetypes to carry the heavy users, the world with no segments needs busier background
# shoppers to keep the real file's shape (the same targets, docs/calibration.md).
_BEHAVIOURS["background_alone"] = dataclasses.replace(
    _BEHAVIOURS["background"], sessions=(1.6, 1.05, 1, 250), views=(2.5, 1.0, 1, 500), in_market=1.0,
    cart=0.025, direct_purchase=0.01, store_mix=(0.92, 1.05),
)
_BEHAVIOURS["background_alone_cosmetics"] = dataclasses.replace(
    _BEHAVIOURS["background_cosmetics"], sessions=(1.6, 1.05, 1, 250), views=(2.5, 1.0, 1, 500), store_mix=(0.92, 1.05),
)
_BEHAVIOUR_KEYS = tuple(_BEHAVIOURS)
assert _BEHAVIOUR_KEYS[:len(ARCHETYPES)] == ARCHETYPES
_BACKGROUND_INDEX = {  # (world, flavour) -> behaviour number of its background shoppers
    (world, flavour): _BEHAVIOUR_KEYS.index(
        "background" + ("_alone" if world == "no_segments" else "") + ("_cosmetics" if flavour == "cosmetics" else ""))
    for world in ("calibrated", "no_segments") for flavour in ("multi_category", "cosmetics")
}
# Behaviour number -> truth label number (both background behaviours are "background").
_TRUTH_OF_BEHAVIOUR = np.array([TRUTH_LABELS.index(k if k in ARCHETYPES else BACKGROUND) for k in _BEHAVIOUR_KEYS],
                               dtype=np.int8)

# Relative activity per UTC hour: quiet 01:00-06:00, busiest in the (European) evening.
_HOURLY = np.array(
    [0.35, 0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.8, 0.9, 1.0, 1.0, 1.0,
     1.05, 1.1, 1.2, 1.35, 1.5, 1.6, 1.6, 1.45, 1.2, 0.9, 0.65, 0.5]
)
_NIGHT_HOURLY = np.where(np.arange(24) < 6, 4.0, _HOURLY)  # night owls: most sessions before 06:00


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
}
_PROFILE_NAMES = tuple(_PROFILES)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class GeneratedEvents:
    """What a generation wrote."""

    files: list[pathlib.Path]  # event files written, sorted
    truth_file: pathlib.Path  # CSV user_id,archetype (an archetype or "background")
    events: int  # total rows written (without header lines)
    users: int


def generate_events(
    out_dir: str | pathlib.Path,
    *,
    users: int = 20_000,
    start: str | dt.date = "2019-11-01",
    days: int = 30,
    seed: int = 42,
    split: str = "month",
    gzip: bool = True,
    header: bool = True,
    progress: bool = True,
    peak_days: Iterable[str | dt.date] | None = None,
    defect_rate: float = 0.0,
    world: str = "calibrated",
    flavour: str = "multi_category",
) -> GeneratedEvents:
    """Write demo event files for ``users`` shoppers over ``days`` days from ``start``.

    The output is byte-identical for identical arguments.  ``peak_days`` defaults to Black Friday
    through Cyber Monday of every year the period touches.  When ``out_dir`` already holds the very
    same generation it is reused as is, which keeps repeated benchmark runs cheap.

    ``defect_rate`` is the share of lines given one of the defects real event files have (an
    exact duplicate line, a truncated line, a negative price, a missing session), so that the
    pipeline's rejection and de-duplication have something to do; 0 writes clean files.

    ``world`` is one of WORLDS (what the shoppers are) and ``flavour`` one of FLAVOURS (which store).
    """
    out = pathlib.Path(out_dir)
    period = _Period.create(start, days, peak_days)
    if users < 1:
        raise ValueError("users must be at least 1")
    if users > _MAX_USER_ID_SPAN:
        raise ValueError(f"users must be at most {_MAX_USER_ID_SPAN:,}")
    if split not in ("month", "day"):
        raise ValueError("split must be 'month' or 'day'")
    if seed < 0:
        raise ValueError("seed must not be negative")
    if not 0.0 <= defect_rate < 0.5:
        raise ValueError("defect_rate must be in [0, 0.5)")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}")
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}")
    settings = {
        "format_version": FORMAT_VERSION, "users": users, "start": period.start.isoformat(),
        "days": days, "seed": seed, "split": split, "gzip": gzip, "header": header,
        "peak_days": [d.isoformat() for d in period.peak_days], "defect_rate": defect_rate,
        "world": world, "flavour": flavour,
    }
    cached = _cached_generation(out, settings)
    if cached is not None:
        return cached
    _remove_previous_generation(out)

    slots = period.file_slots(split, ".csv.gz" if gzip else ".csv")
    paths = [out / name for name, _, _ in slots]
    truth_path = out / TRUTH_DIR / TRUTH_FILE
    # Record ownership before writing, so an interrupted run is still cleaned up by the next one.
    _write_manifest(out, settings, paths, truth_path, complete=False)

    catalogue = _Catalogue.build(users, seed)
    bounds = np.array([lo for _, lo, _ in slots] + [slots[-1][2]], dtype=np.int64)
    with ThreadPoolExecutor(_WORKERS) as pool:
        buckets, sessions, truth = _simulate(users, seed, period, catalogue, bounds, pool, progress,
                                             _Population(world, flavour))
        _write_truth(truth_path, *truth)
        encoder = _Encoder(period, catalogue, sessions, seed, header, defect_rate)
        total = sum(sum(len(piece["time"]) for piece in bucket) for bucket in buckets)
        with tqdm(total=total, unit="event", unit_scale=True, desc="write", disable=not progress,
                  file=sys.stderr) as bar:
            extra_lines = 0
            for path, bucket in zip(paths, buckets, strict=True):
                columns, order = _file_events(bucket)
                bucket.clear()  # the file's pieces now live in ``columns`` only
                extra_lines += _write_event_file(path, columns, order, encoder, gzip, pool, bar)
                del columns, order
        total += extra_lines  # duplicated lines are rows of the files too

    result = GeneratedEvents(files=sorted(paths), truth_file=truth_path, events=total, users=users)
    _write_manifest(out, settings, paths, truth_path, complete=True, events=total, users=users)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the generator's command-line options to ``parser``."""
    parser.add_argument("--out", default="data/events", help="output folder (default: %(default)s)")
    parser.add_argument("--users", type=int, default=20_000, help="number of shoppers (default: %(default)s)")
    parser.add_argument("--start", default="2019-11-01", help="first day, YYYY-MM-DD (default: %(default)s)")
    parser.add_argument("--days", type=int, default=30, help="length of the period in days (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    parser.add_argument("--split", choices=("month", "day"), default="month",
                        help="one file per calendar month (like REES46) or per day (default: %(default)s)")
    parser.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=True,
                        help="write .csv.gz instead of .csv (default: on)")
    parser.add_argument("--no-header", dest="header", action="store_false",
                        help="omit the header line (the real November file has none)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    parser.add_argument("--defect-rate", type=float, default=0.0,
                        help="share of lines given a real-world defect (duplicate, truncated, ...) (default: 0)")
    parser.add_argument("--world", choices=WORLDS, default="calibrated",
                        help="calibrated: the real file's shape with a minority of planted archetypes; "
                             "no_segments: no structure at all; planted: archetypes only (default: %(default)s)")
    parser.add_argument("--flavour", choices=FLAVOURS, default="multi_category",
                        help="multi_category logs no remove_from_cart; cosmetics does (default: %(default)s)")
    parser.add_argument("--peak-day", dest="peak_days", action="append", metavar="YYYY-MM-DD",
                        help="sale day with extra traffic; repeatable (default: Black Friday to Cyber Monday)")


def run(args: argparse.Namespace) -> int:
    """Command-line entry point: generate and print a one-line summary."""
    began = time.perf_counter()
    result = generate_events(
        args.out, users=args.users, start=args.start, days=args.days, seed=args.seed, split=args.split,
        gzip=args.gzip, header=args.header, progress=args.progress, peak_days=getattr(args, "peak_days", None),
        defect_rate=getattr(args, "defect_rate", 0.0), world=getattr(args, "world", "calibrated"),
        flavour=getattr(args, "flavour", "multi_category"),
    )
    seconds = time.perf_counter() - began
    print(
        f"{result.events:,} events of {result.users:,} users in {len(result.files)} file(s) "
        f"under {pathlib.Path(args.out)} ({seconds:.1f} s, truth: {result.truth_file})"
    )
    return 0


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
# Vectorised helpers
# --------------------------------------------------------------------------------------------------


def _mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective, well-mixing hash of uint64 values (so distinct inputs
    give distinct outputs, which makes derived session ids unique)."""
    x = values.astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _draw_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of a column index for each (row, uniform) pair in one searchsorted call:
    row r's cumulative weights are shifted into (r, r + 1]."""
    n_rows, n_cols = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    pos = np.searchsorted(flat, rows + u, side="right") - rows * n_cols
    return np.minimum(pos, n_cols - 1)


def _lognormal_counts(rng: np.random.Generator, median: np.ndarray, sigma: np.ndarray,
                      low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Heavy-tailed integer counts, clipped to [low, high]."""
    values = median * np.exp(sigma * rng.standard_normal(len(median)))
    return np.clip(np.rint(values), low, high).astype(np.int32)


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    """Index of the first element of each non-empty segment in a flat array of segments."""
    return np.concatenate(([0], np.cumsum(counts[:-1], dtype=np.int64)))


def _segmented_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Running sum restarting at each segment (all counts must be >= 1)."""
    total = np.cumsum(values)
    starts = _segment_starts(counts)
    return total - np.repeat(total[starts] - values[starts], counts)


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """Zero-copy arrow string column from an (n, width) byte matrix."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


# --------------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Catalogue:
    """Products with fixed category and brand, power-law popularity and category-typical prices,
    plus precomputed samplers for the ways shoppers pick products."""

    product_id: np.ndarray  # int64, per product
    category: np.ndarray  # int32 category index, per product
    brand: np.ndarray  # int32 brand index (len(brand_names) - 1 = no brand), per product
    base_cents: np.ndarray  # float64 list price in cents, per product
    category_id: np.ndarray  # int64, per category
    category_codes: pa.Array  # string or null, per category
    brand_names: pa.Array  # string per brand, last entry null
    segment_cumulative: np.ndarray  # see draw_product
    segment_products: np.ndarray
    segment_last: np.ndarray
    category_cdf: np.ndarray  # (archetype, category) preference weights, cumulative
    brand_cdf: np.ndarray  # (1, brand) popularity, cumulative; loyal users pick favourites from it

    @classmethod
    def build(cls, users: int, seed: int) -> _Catalogue:
        rng = np.random.default_rng([seed, 0])
        specs = _CATEGORIES
        n_categories = len(specs)
        weight = np.array([c.weight for c in specs])
        n_products = max(2000, users // 20)

        # Bigger categories carry more products (at least 8 each).
        share = weight**0.6 / (weight**0.6).sum()
        per_category = np.maximum(8, np.rint(share * n_products)).astype(np.int64)
        category = np.repeat(np.arange(n_categories, dtype=np.int32), per_category)
        n = len(category)
        first = _segment_starts(per_category)

        # Zipf popularity over a random order of each category's products; a category's products
        # share its traffic weight.
        zipf = (_shuffle_within(rng, per_category) + 1.0) ** -1.1
        popularity = weight[category] * zipf / np.repeat(np.add.reduceat(zipf, first), per_category)

        brand_names, brand = _assign_brands(rng, specs, category, per_category)

        # Prices: log-scale position within the category range, mostly towards the cheap end,
        # towards the dear end for premium brands.
        premium = np.append(np.isin(brand_names, _PREMIUM_BRANDS), False)[brand]
        position = rng.beta(np.where(premium, 3.0, 1.6), np.where(premium, 1.5, 2.4))
        low = np.array([c.low for c in specs])[category]
        high = np.array([c.high for c in specs])[category]
        base_cents = 100.0 * low * (high / low) ** position
        price_rank = _rank_within(base_cents, category, per_category)

        # Product ids: sorted random 7-8 digit numbers, so a category occupies a contiguous id range.
        product_id = np.sort(rng.choice(59_000_000, n, replace=False)).astype(np.int64) + 1_000_000
        category_id = _category_ids(rng, n_categories)

        # Sampling segments: each category in each price band, then each brand.
        segments = []
        for begin, size in zip(first, per_category, strict=True):
            members = np.arange(begin, begin + size)
            segments += [members[(price_rank[members] >= lo) & (price_rank[members] <= hi)] for lo, hi in _BANDS]
        by_brand = np.argsort(brand, kind="stable")
        segments += np.split(by_brand, np.searchsorted(brand[by_brand], np.arange(1, len(brand_names) + 1)))[:-1]
        brand_popularity = np.bincount(brand, weights=popularity, minlength=len(brand_names) + 1)[:-1]
        cumulative, products, last = _segment_sampler(segments, popularity)

        codes = [c.code or None for c in specs]
        return cls(
            product_id=product_id, category=category, brand=brand, base_cents=base_cents,
            category_id=category_id, category_codes=pa.array(codes, pa.string()),
            brand_names=pa.array(brand_names + [None], pa.string()),
            segment_cumulative=cumulative, segment_products=products, segment_last=last,
            category_cdf=_archetype_category_cdf(specs, weight),
            brand_cdf=(np.cumsum(brand_popularity) / brand_popularity.sum())[None, :],
        )

    @property
    def n_categories(self) -> int:
        return len(self.category_id)

    def draw_product(self, segment: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Popularity-weighted product from each requested segment; segment s's weights occupy
        (s, s + 1] of one concatenated cumulative array, so a single searchsorted serves all."""
        pos = np.searchsorted(self.segment_cumulative, segment + u, side="right")
        return self.segment_products[np.minimum(pos, self.segment_last[segment])]

    def category_segment(self, category: np.ndarray, band: np.ndarray) -> np.ndarray:
        return category * len(_BANDS) + band

    def brand_segment(self, brand: np.ndarray) -> np.ndarray:
        return self.n_categories * len(_BANDS) + brand


def _shuffle_within(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """A random permutation of 0..count-1 inside every segment."""
    keys = rng.random(int(counts.sum())) + np.repeat(np.arange(len(counts)), counts)
    order = np.argsort(keys, kind="stable")
    ranks = np.empty_like(order)
    ranks[order] = np.arange(len(order))
    return ranks - np.repeat(_segment_starts(counts), counts)


def _rank_within(values: np.ndarray, category: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rank of each value inside its (contiguous) category, scaled to [0, 1]."""
    order = np.lexsort((values, category))
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    ranks -= np.repeat(_segment_starts(counts), counts)
    return ranks / np.repeat(np.maximum(counts - 1, 1), counts)


def _assign_brands(rng: np.random.Generator, specs: tuple[_CategorySpec, ...], category: np.ndarray,
                   counts: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Brand of each product: Zipf-weighted among its category's brands, or none (last index)."""
    names = sorted({b for c in specs for b in c.brands.split()})
    index = {b: i for i, b in enumerate(names)}
    brand = np.full(len(category), len(names), dtype=np.int32)
    start = 0
    for spec, count in zip(specs, counts, strict=True):  # one iteration per category, not per product
        own = spec.brands.split()
        if own:
            weights = 1.0 / np.arange(1, len(own) + 1) ** 0.6
            picks = rng.choice(len(own), size=count, p=weights / weights.sum())
            branded = rng.random(count) >= spec.unbranded
            ids = np.array([index[b] for b in own], dtype=np.int32)[picks]
            brand[start:start + count] = np.where(branded, ids, len(names))
        start += count
    # Keep only brands that ended up on a product, so every brand segment can be sampled.
    used, brand = np.unique(brand, return_inverse=True)
    names = [names[i] for i in used if i < len(names)]
    return names, brand.astype(np.int32)


def _category_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique 19-digit ids shaped like REES46's (most share the 20530135... prefix)."""
    offsets = rng.choice(15_000_000_000, size=n, replace=False)
    return 2_053_013_552_000_000_000 + offsets.astype(np.int64)


def _segment_sampler(segments: list[np.ndarray], popularity: np.ndarray) -> tuple[np.ndarray, ...]:
    """Concatenate product subsets with their cumulative popularity shifted into (s, s + 1]."""
    products = np.concatenate(segments).astype(np.int32)
    lengths = np.array([len(s) for s in segments])
    owner = np.repeat(np.arange(len(segments)), lengths)
    weights = popularity[products]
    within = _segmented_cumsum(weights, lengths)
    totals = within[np.cumsum(lengths) - 1]
    cumulative = owner + within / np.repeat(totals, lengths)
    return cumulative, products, np.cumsum(lengths) - 1


def _store_mix(spec: _CategorySpec, electronics: float, uncoded: float) -> float:
    """Background shoppers' weight on a category relative to the catalogue's traffic weight, so that
    the world's electronics, uncoded and brandless shares match the real sample (docs/calibration.md):
    the catalogue leans to brandless goods, and the archetypes (when there are) to electronics."""
    top = spec.code.split(".")[0]
    return {"electronics": electronics, "": uncoded}.get(top, 1.0) * (1.0 - 0.85 * spec.unbranded)


def _archetype_category_cdf(specs: tuple[_CategorySpec, ...], weight: np.ndarray) -> np.ndarray:
    """Which categories each archetype is drawn to (traffic weight, restricted by its filters)."""
    rows = []
    for name in _BEHAVIOUR_KEYS:
        behaviour = _BEHAVIOURS[name]
        allowed = np.array([
            (not behaviour.top_levels or s.code.split(".")[0] in behaviour.top_levels)
            and s.high >= behaviour.min_price_ceiling
            for s in specs
        ])
        if behaviour.store_mix:
            allowed = allowed * np.array([_store_mix(s, *behaviour.store_mix) for s in specs])
        cumulative = np.cumsum(weight * allowed)
        rows.append(cumulative / cumulative[-1])
    return np.stack(rows)


# --------------------------------------------------------------------------------------------------
# Simulation of shoppers
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
            behaviour[planted] = rng.integers(0, len(ARCHETYPES), int(planted.sum()))
        return behaviour


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
    cart_taste = np.exp(0.4 * rng.standard_normal(n_users))  # per-user spread around the archetype
    buy_taste = np.exp(0.25 * rng.standard_normal(n_users))
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
# Writing
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


class _Encoder:
    """Turns slices of sorted compact events into CSV bytes (called from worker threads)."""

    def __init__(self, period: _Period, catalogue: _Catalogue, sessions: dict[str, np.ndarray],
                 seed: int, header: bool, defect_rate: float = 0.0) -> None:
        self.catalogue = catalogue
        self.day_prefix = np.frombuffer(
            "".join(f"{d:%Y-%m-%d} " for d in period.dates()).encode(), np.uint8).reshape(-1, 11)
        self.time_of_day = _time_of_day_table()
        self.session_user = sessions["user"]
        self.session_uuid = sessions["uuid"]
        self.seed = seed
        self.defect_rate = defect_rate
        self.header = (HEADER + "\n").encode() if header else b""
        self.event_types = pa.array(EVENT_TYPES, pa.string())
        self.options = pa_csv.WriteOptions(include_header=False, quoting_style="none", batch_size=_BATCH_ROWS)

    def encode(self, columns: dict[str, np.ndarray], rows: np.ndarray) -> tuple[bytes | pa.Buffer, int]:
        """CSV text of the given rows (indices into ``columns``), in that order, with defects
        injected; and the number of lines added (duplicates)."""
        t = columns["time"][rows]
        product = columns["product"][rows]
        session = columns["session"][rows]
        cat = self.catalogue
        category = cat.category[product]
        user = self.session_user[session]
        day = t // _DAY
        stamp = np.empty((len(t), 23), np.uint8)
        stamp[:, :11] = np.take(self.day_prefix, day, axis=0)
        stamp[:, 11:] = np.take(self.time_of_day, t - day * _DAY, axis=0)
        table = pa.Table.from_arrays(
            [
                _fixed_width_strings(stamp),
                pa.DictionaryArray.from_arrays(pa.array(columns["type"][rows]), self.event_types),
                pa.array(cat.product_id[product]),
                pa.array(cat.category_id[category]),
                pa.DictionaryArray.from_arrays(pa.array(category), cat.category_codes),
                pa.DictionaryArray.from_arrays(pa.array(cat.brand[product]), cat.brand_names),
                _decimal_prices(columns["cents"][rows]),
                pa.array(_user_ids(user, self.seed)),
                _fixed_width_strings(np.take(self.session_uuid, session, axis=0)),
            ],
            names=list(COLUMNS),
        )
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(table, sink, self.options)
        if self.defect_rate == 0.0:
            return sink.getvalue(), 0
        return self._inject_defects(sink.getvalue().to_pybytes(), rows)

    _DEFECTS = ("duplicate_line", "truncated_line", "negative_price", "missing_session")

    def _inject_defects(self, text: bytes, rows: np.ndarray) -> tuple[bytes, int]:
        """Damage a deterministic few lines (chosen by a hash of their position): a loop over
        the damaged lines only, never over every event."""
        draw = _mix64(rows.astype(np.uint64) ^ np.uint64(self.seed * 0x9E3779B1 + 1))
        chosen = np.flatnonzero(draw % np.uint64(1_000_000) < np.uint64(round(self.defect_rate * 1_000_000)))
        if len(chosen) == 0:
            return text, 0
        lines = text.split(b"\n")
        added = 0
        for position in chosen[::-1]:  # from the end, so inserted lines do not shift the others
            kind = self._DEFECTS[int(draw[position] >> np.uint64(40)) % len(self._DEFECTS)]
            line = lines[position]
            fields = line.split(b",")
            if kind == "duplicate_line":
                lines.insert(position, line)
                added += 1
            elif kind == "truncated_line":
                lines[position] = line[: line.rindex(b",")]
            elif kind == "negative_price":
                fields[6] = b"-" + fields[6]
                lines[position] = b",".join(fields)
            else:
                fields[8] = b""
                lines[position] = b",".join(fields)
        return b"\n".join(lines), added


def _time_of_day_table() -> np.ndarray:
    """'HH:MM:SS UTC' for every second of a day as a (86400, 12) byte matrix: formatting by
    lookup is far faster than strftime per event."""
    s = np.arange(_DAY)
    table = np.tile(np.frombuffer(b"00:00:00 UTC", np.uint8), (_DAY, 1))
    for column, digit in ((0, s // 36000), (1, s // 3600 % 10), (3, s // 600 % 6),
                          (4, s // 60 % 10), (6, s // 10 % 6), (7, s % 10)):
        table[:, column] += digit.astype(np.uint8)
    return table


def _decimal_prices(cents: np.ndarray) -> pa.Array:
    """decimal128(12, 2) column straight from integer cents (prints as e.g. 543.10)."""
    words = np.zeros((len(cents), 2), np.int64)
    words[:, 0] = cents
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [None, pa.py_buffer(words)])


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


def _write_event_file(path: pathlib.Path, columns: dict[str, np.ndarray], order: np.ndarray, encoder: _Encoder,
                      gzip: bool, pool: ThreadPoolExecutor, bar: tqdm) -> int:
    """Encode (and compress) blocks of rows in worker threads and write them in order; a few
    blocks in flight keep both cores busy while bounding memory.  Returns the lines added by
    injected duplicates."""
    sink = _Sink(gzip)
    added = 0

    def encode(rows: np.ndarray) -> tuple[bytes | pa.Buffer, bytes | pa.Buffer, int, int]:
        text, extra = encoder.encode(columns, rows)
        return text, sink.pack(text), len(rows), extra

    def write_next() -> None:
        nonlocal added
        text, packed, rows, extra = pending.popleft().result()
        sink.write(raw, text, packed)
        bar.update(rows)
        added += extra

    with open(path, "wb") as raw:
        sink.open(raw, encoder.header)
        pending: collections.deque[Future] = collections.deque()
        for lo in range(0, len(order), _BATCH_ROWS):
            pending.append(pool.submit(encode, order[lo:lo + _BATCH_ROWS]))
            if len(pending) > 2 * _WORKERS:
                write_next()
        while pending:
            write_next()
        sink.close(raw)
    return added


class _Sink:
    """Writes CSV blocks in order, plain or as one gzip member made of independently deflated
    blocks (like pigz), so that blocks can be compressed in parallel threads.  The gzip mtime
    is 0 to keep the output byte-identical between runs."""

    def __init__(self, gzip: bool) -> None:
        self.gzip = gzip
        self.crc = 0
        self.size = 0

    def pack(self, text: bytes | pa.Buffer) -> bytes | pa.Buffer:
        """The bytes to store for a block of CSV text (thread-safe)."""
        if not self.gzip:
            return text
        deflate = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -15)
        return deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)

    def open(self, raw: BinaryIO, header: bytes) -> None:
        if self.gzip:
            raw.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        if header:
            self.write(raw, header, self.pack(header))

    def write(self, raw: BinaryIO, text: bytes | pa.Buffer, packed: bytes | pa.Buffer) -> None:
        """Append the packed form of ``text`` (blocks must come in order)."""
        if self.gzip:
            self.crc = zlib.crc32(text, self.crc)
            self.size += len(text)
        raw.write(packed)

    def close(self, raw: BinaryIO) -> None:
        if self.gzip:
            final = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -15).flush()  # empty last block
            raw.write(final + self.crc.to_bytes(4, "little") + (self.size & 0xFFFFFFFF).to_bytes(4, "little"))


def _write_truth(path: pathlib.Path, user_ids: np.ndarray, archetype: np.ndarray) -> None:
    """user_id,archetype per user, sorted by user_id."""
    order = np.argsort(user_ids)
    table = pa.table({
        "user_id": pa.array(user_ids[order]),
        "archetype": pa.DictionaryArray.from_arrays(pa.array(archetype[order]), pa.array(TRUTH_LABELS)),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"user_id,archetype\n")
        pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False, quoting_style="none"))


# --------------------------------------------------------------------------------------------------
# Manifest: caching and ownership of generated files
# --------------------------------------------------------------------------------------------------


def _manifest_path(out: pathlib.Path) -> pathlib.Path:
    return out / TRUTH_DIR / MANIFEST_FILE


def _read_manifest(out: pathlib.Path) -> dict | None:
    try:
        return json.loads(_manifest_path(out).read_text())
    except (OSError, ValueError):
        return None


def _write_manifest(out: pathlib.Path, settings: dict, paths: list[pathlib.Path], truth: pathlib.Path, *,
                    complete: bool, events: int = 0, users: int = 0) -> None:
    manifest = {
        "settings": settings, "complete": complete, "files": [p.name for p in paths],
        "truth_file": truth.name, "events": events, "users": users,
        "sizes": {p.name: p.stat().st_size for p in paths} if complete else {},
    }
    path = _manifest_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _cached_generation(out: pathlib.Path, settings: dict) -> GeneratedEvents | None:
    """The previous result if out_dir holds a complete, untouched generation with these settings."""
    manifest = _read_manifest(out)
    if not manifest or not manifest.get("complete") or manifest.get("settings") != settings:
        return None
    paths = [out / name for name in manifest["files"]]
    truth = out / TRUTH_DIR / manifest["truth_file"]
    intact = truth.is_file() and all(p.is_file() and p.stat().st_size == manifest["sizes"].get(p.name)
                                     for p in paths)
    if not intact:
        return None
    return GeneratedEvents(files=sorted(paths), truth_file=truth, events=manifest["events"], users=manifest["users"])


def _remove_previous_generation(out: pathlib.Path) -> None:
    """Delete the files a previous generation recorded as its own (and nothing else)."""
    manifest = _read_manifest(out)
    if not manifest:
        return
    owned = [out / pathlib.Path(name).name for name in manifest.get("files", [])]
    owned.append(out / TRUTH_DIR / pathlib.Path(manifest.get("truth_file", TRUTH_FILE)).name)
    for path in owned:
        path.unlink(missing_ok=True)
    _manifest_path(out).unlink(missing_ok=True)
