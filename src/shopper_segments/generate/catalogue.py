"""The store the shoppers browse: categories with their real REES46 codes, brands, products and
prices, and the samplers that draw a product for a shopper's category, price band and brands.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from .base import _segment_starts, _segmented_cumsum
from .shoppers import _BANDS, _BEHAVIOUR_KEYS, _BEHAVIOURS

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
