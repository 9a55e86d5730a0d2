"""The calibrated world's targets and the figures a generation reaches (docs/calibration.md).

    python -m shopper_segments.generate.calibration --users 20000 [--flavour cosmetics]

generates a month of the calibrated world in a scratch folder and prints the calibration table:
each target, the generated figure and where the target comes from. The test suite checks every
figure at a small scale (tests/pytest/test_generator.py).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "2019-Oct-head.csv"
PUBLISHED = "published figures of the real October 2019 multi-category file (42.4 M events, 3.02 M shoppers, 9.24 M sessions)"
PUBLISHED_FUNNEL = "published event-type mix of the real October 2019 multi-category file"
ESTIMATE = "estimate for the real October 2019 file (issue 14)"
REAL_SAMPLE = "the bundled real sample data/sample/2019-Oct-head.csv"
COSMETICS = "REES46 cosmetics store (about a fifth of its events are remove_from_cart)"


@dataclass(frozen=True)
class Target:
    figure: str  # name of a figure computed by `generated_figures`
    value: float
    source: str


TARGETS: tuple[Target, ...] = (
    Target("events_per_shopper", 42.4 / 3.02, PUBLISHED),
    Target("sessions_per_shopper", 9.24 / 3.02, PUBLISHED),
    Target("events_per_session", 42.4 / 9.24, PUBLISHED),
    Target("view_share", 0.9607, PUBLISHED_FUNNEL),
    Target("cart_share", 0.0218, PUBLISHED_FUNNEL),
    Target("purchase_share", 0.0175, PUBLISHED_FUNNEL),
    Target("buyer_share", 0.11, ESTIMATE),
    Target("brand_missing_share", 0.1421, REAL_SAMPLE),
    Target("category_code_missing_share", 0.3296, REAL_SAMPLE),
    Target("electronics_share", 0.3634, REAL_SAMPLE),
    Target("median_price", 154.42, REAL_SAMPLE),
)
# Reported, not calibrated (docs/calibration.md, "Gaps"): the catalogue's price quartiles.
UNCALIBRATED: tuple[Target, ...] = (
    Target("price_quartile_1", 59.785, REAL_SAMPLE),
    Target("price_quartile_3", 360.08, REAL_SAMPLE),
)
COSMETICS_TARGETS: tuple[Target, ...] = (Target("remove_share", 0.20, COSMETICS),)
# Shape facts checked besides the table: most shoppers come one to three times; the multi-category
# store logs no remove_from_cart.
MOST_SHOPPERS_SESSIONS = 3


def generated_figures(files: list[Path]) -> dict[str, float]:
    """The calibration figures of event files, computed in SQL from the files alone."""
    con = duckdb.connect()
    paths = ", ".join(f"'{p}'" for p in files)
    con.sql(f"create table e as select * from read_csv([{paths}], header = true, all_varchar = true)")
    row = con.sql(
        """
        with per_user as (
            select user_id, count(*) as events, count(distinct user_session) as sessions,
                   count(*) filter (where event_type = 'purchase') as purchases
            from e group by user_id
        )
        select
            (select count(*) from e) / count(*) as events_per_shopper,
            sum(sessions) / count(*) as sessions_per_shopper,
            (select count(*) from e) / sum(sessions) as events_per_session,
            avg((purchases > 0)::int) as buyer_share,
            avg((sessions <= 3)::int) as shoppers_with_1_to_3_sessions
        from per_user
        """
    ).df().iloc[0].to_dict()
    row.update(
        con.sql(
            """
            select
                avg((event_type = 'view')::int) as view_share,
                avg((event_type = 'cart')::int) as cart_share,
                avg((event_type = 'purchase')::int) as purchase_share,
                avg((event_type = 'remove_from_cart')::int) as remove_share,
                avg((brand is null)::int) as brand_missing_share,
                avg((category_code is null)::int) as category_code_missing_share,
                avg(coalesce(split_part(category_code, '.', 1) = 'electronics', false)::int) as electronics_share,
                median(price::double) as median_price,
                quantile_cont(price::double, 0.25) as price_quartile_1,
                quantile_cont(price::double, 0.75) as price_quartile_3
            from e
            """
        ).df().iloc[0].to_dict()
    )
    return {k: float(v) for k, v in row.items()}


def calibration_table(figures: dict[str, float], targets=TARGETS) -> list[tuple[str, float, float, str]]:
    return [(t.figure, t.value, figures[t.figure], t.source) for t in targets]


def main(argv: list[str] | None = None) -> int:
    from .events import generate_events
    from .shoppers import FLAVOURS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--flavour", choices=FLAVOURS, default="multi_category")
    parser.add_argument("--world", choices=("calibrated", "no_segments"), default="calibrated")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        generated = generate_events(folder, users=args.users, start="2019-10-01", days=31, seed=args.seed,
                                    gzip=False, progress=False, flavour=args.flavour, world=args.world)
        figures = generated_figures(generated.files)
    targets = TARGETS + (COSMETICS_TARGETS if args.flavour == "cosmetics" else ())
    print("| figure | target | generated | source of the target |\n|---|---|---|---|")
    for figure, target, value, source in calibration_table(figures, targets):
        print(f"| {figure} | {target:.4g} | {value:.4g} | {source} |")
    for figure, target, value, source in calibration_table(figures, UNCALIBRATED):
        print(f"| {figure} (not calibrated) | {target:.4g} | {value:.4g} | {source} |")
    print(f"\nshoppers with 1-3 sessions: {figures['shoppers_with_1_to_3_sessions']:.1%}; "
          f"remove_from_cart share: {figures['remove_share']:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
