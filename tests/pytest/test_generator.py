"""Tests of the demo event generator: exact REES46 file format, determinism, realistic behaviour
and the planted archetypes.  Files are read back with plain Python, gzip and pandas only."""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import re
from pathlib import Path

import pandas as pd
import pytest

from shopper_segments.generate import calibration
from shopper_segments.generate import (
    ARCHETYPES,
    BACKGROUND,
    CALIBRATED_ARCHETYPE_SHARE,
    GeneratedEvents,
    add_arguments,
    generate_events,
    run,
)

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
LINE = re.compile(
    r"(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) UTC,"
    r"(?:view|cart|remove_from_cart|purchase),"
    r"[1-9]\d{6,7},"  # product_id: 7-8 digits
    r"(?P<category_id>[1-9]\d{18}),"
    r"(?P<code>[a-z_]+(?:\.[a-z_]+){0,2})?,"
    r"[a-z0-9-]*,"  # brand: lowercase or empty
    r"(?P<price>\d+\.\d\d),"
    r"[1-9]\d{8},"  # user_id: 9 digits
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
TOP_LEVELS = {
    "electronics", "appliances", "computers", "apparel", "furniture", "kids", "construction",
    "auto", "sport", "accessories", "stationery", "medicine", "country_yard",
}
PEAK = ("2019-11-29", "2019-11-30", "2019-12-01", "2019-12-02")
USERS = 2_000


def read_events(files: list[Path], header: bool = True) -> pd.DataFrame:
    """All events as strings (empty fields become NaN), with parsed time and numeric price."""
    frames = [
        pd.read_csv(f, header=0 if header else None, names=None if header else HEADER.split(","), dtype=str)
        for f in files
    ]
    events = pd.concat(frames, ignore_index=True)
    events["ts"] = pd.to_datetime(events["event_time"].str.removesuffix(" UTC"))
    events["price"] = events["price"].astype(float)
    return events


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedEvents:
    """Nov 1 - Dec 10 2019 (two month files, contains Black Friday to Cyber Monday), uncompressed."""
    out = tmp_path_factory.mktemp("month")
    return generate_events(out, users=USERS, start="2019-11-01", days=40, seed=7, gzip=False, progress=False,
                           world="planted")


@pytest.fixture(scope="module")
def events(generated: GeneratedEvents) -> pd.DataFrame:
    return read_events(generated.files)


@pytest.fixture(scope="module")
def truth(generated: GeneratedEvents) -> pd.DataFrame:
    return pd.read_csv(generated.truth_file, dtype={"user_id": str})


@pytest.fixture(scope="module")
def per_user(events: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per-user behaviour summary joined with the true archetype."""
    counts = events.pivot_table(index="user_id", columns="event_type", values="event_time", aggfunc="size",
                                fill_value=0)
    summary = pd.DataFrame({
        "events": events.groupby("user_id").size(),
        "sessions": events.groupby("user_id")["user_session"].nunique(),
        "active_days": events.groupby("user_id")["ts"].agg(lambda t: t.dt.date.nunique()),
        "span_days": events.groupby("user_id")["ts"].agg(lambda t: (t.max() - t.min()).days),
        "median_price": events.groupby("user_id")["price"].median(),
        "night": events.groupby("user_id")["ts"].agg(lambda t: (t.dt.hour < 6).mean()),
    }).join(counts.reindex(columns=["view", "cart", "remove_from_cart", "purchase"], fill_value=0))
    return summary.join(truth.set_index("user_id"))


# --------------------------------------------------------------------------------------------------
# Files and format
# --------------------------------------------------------------------------------------------------


def test_month_files_named_like_rees46_and_truth_kept_apart(generated: GeneratedEvents) -> None:
    out = generated.files[0].parent
    assert [f.name for f in generated.files] == ["2019-Dec.csv", "2019-Nov.csv"]
    assert sorted(out.glob("*.csv*")) == generated.files
    assert generated.truth_file == out / "truth" / "user_archetypes.csv"
    assert generated.users == USERS


def test_every_line_has_the_exact_format(generated: GeneratedEvents) -> None:
    rows = 0
    for path in generated.files:
        raw = path.read_bytes()
        assert b"\r" not in raw and b'"' not in raw and raw.endswith(b"\n")
        lines = raw.decode("ascii").splitlines()
        assert lines[0] == HEADER
        for line in lines[1:]:
            match = LINE.fullmatch(line)
            assert match, line
            assert int(match["category_id"]) < 9_223_372_036_854_775_807
            assert float(match["price"]) > 0
            if match["code"]:
                assert match["code"].split(".")[0] in TOP_LEVELS, line
        rows += len(lines) - 1
    assert rows == generated.events


def test_times_sorted_within_each_file_and_inside_the_period(generated: GeneratedEvents) -> None:
    months = {"2019-Nov.csv": "2019-11", "2019-Dec.csv": "2019-12"}
    for path in generated.files:
        times = [line[:19] for line in path.read_text().splitlines()[1:]]
        assert times == sorted(times)
        assert {t[:7] for t in times} == {months[path.name]}
        assert times[0] >= "2019-11-01 00:00:00" and times[-1] < "2019-12-11"


def test_identifiers_are_unique_and_consistent(events: pd.DataFrame, truth: pd.DataFrame) -> None:
    assert events.groupby("user_session")["user_id"].nunique().max() == 1  # a session has one user
    product = events.fillna({"category_code": "", "brand": ""}).groupby("product_id")
    assert product["category_id"].nunique().max() == 1
    assert product["category_code"].nunique().max() == 1
    assert product["brand"].nunique().max() == 1
    assert events.groupby(["user_session", "product_id"])["price"].nunique().max() == 1
    prices = events.groupby("product_id")["price"]
    assert (prices.max() / prices.min()).max() <= 1.1 / 0.9 + 1e-6  # price drifts at most +-10%
    assert truth["user_id"].is_unique
    assert set(events["user_id"]) <= set(truth["user_id"])


def test_empty_category_code_and_brand_rates(events: pd.DataFrame) -> None:
    assert 0.22 <= events["category_code"].isna().mean() <= 0.40
    assert 0.08 <= events["brand"].isna().mean() <= 0.22


def test_truth_file_has_one_row_per_user_and_all_archetypes(generated: GeneratedEvents,
                                                            truth: pd.DataFrame) -> None:
    assert generated.truth_file.read_text().splitlines()[0] == "user_id,archetype"
    assert len(truth) == USERS
    assert set(truth["archetype"]) == set(ARCHETYPES)
    shares = truth["archetype"].value_counts(normalize=True)
    assert 0.28 <= shares["window_shopper"] <= 0.42
    assert shares.min() >= 0.06


# --------------------------------------------------------------------------------------------------
# Behaviour
# --------------------------------------------------------------------------------------------------


def test_event_mix_is_close_to_rees46(events: pd.DataFrame) -> None:
    mix = events["event_type"].value_counts(normalize=True)
    assert mix["view"] == pytest.approx(0.96, abs=0.015)
    assert mix["cart"] == pytest.approx(0.02, abs=0.007)
    assert mix["purchase"] == pytest.approx(0.017, abs=0.006)
    assert 0.001 <= mix["remove_from_cart"] <= 0.008


def test_funnel_order_within_sessions(events: pd.DataFrame) -> None:
    carts = events[events["event_type"] == "cart"].groupby(["user_session", "product_id"])["ts"].min()

    def preceded_by_cart(kind: str) -> pd.Series:
        rows = events[events["event_type"] == kind].set_index(["user_session", "product_id"])["ts"]
        first_cart = carts.reindex(rows.index)
        return first_cart.notna() & (first_cart <= rows)

    assert preceded_by_cart("remove_from_cart").all()
    assert 0.55 <= preceded_by_cart("purchase").mean() < 1.0  # mostly after a cart, some direct


def test_heavy_tail_of_events_per_user(per_user: pd.DataFrame) -> None:
    assert per_user["events"].max() >= 20 * per_user["events"].median()


def test_users_return_over_weeks(per_user: pd.DataFrame) -> None:
    assert (per_user["sessions"] >= 3).mean() >= 0.3
    returning = per_user[per_user["sessions"] >= 10]
    assert len(returning) >= 0.1 * len(per_user)
    assert (returning["span_days"] >= 14).mean() >= 0.8


def test_black_friday_weekend_is_busier(events: pd.DataFrame) -> None:
    daily = events.groupby(events["ts"].dt.date).size()
    peak = daily.index.isin([dt.date.fromisoformat(d) for d in PEAK])
    assert daily[peak].mean() >= 2.0 * daily[~peak].mean()


def test_daily_rhythm_quiet_at_night(events: pd.DataFrame) -> None:
    hourly = events.groupby(events["ts"].dt.hour).size()
    assert hourly.loc[1:5].mean() < 0.5 * hourly.loc[16:20].mean()


def test_sessions_are_short(events: pd.DataFrame) -> None:
    duration = events.groupby("user_session")["ts"].agg(lambda t: (t.max() - t.min()).total_seconds())
    assert duration.median() < 15 * 60
    assert duration.max() <= 2 * 3600


def test_archetypes_behave_differently(per_user: pd.DataFrame) -> None:
    by = per_user.groupby("archetype")[["events", "sessions", "active_days", "view", "cart",
                                        "remove_from_cart", "purchase"]].sum()
    view_to_cart = by["cart"] / by["view"]
    cart_to_purchase = by["purchase"] / by["cart"]
    assert view_to_cart["window_shopper"] < 0.003
    assert by.loc["window_shopper", "purchase"] <= 0.002 * by.loc["window_shopper", "view"]
    assert view_to_cart["decisive_buyer"] >= 0.2 and cart_to_purchase["decisive_buyer"] >= 0.7
    assert 0.12 <= view_to_cart["cart_abandoner"] <= 0.3 and cart_to_purchase["cart_abandoner"] < 0.15
    assert by.loc["cart_abandoner", "remove_from_cart"] >= 0.25 * by.loc["cart_abandoner", "cart"]

    typical = per_user.groupby("archetype").median(numeric_only=True)
    assert typical.loc["decisive_buyer", "sessions"] <= 3
    assert typical.loc["loyal_regular", "sessions"] >= 10 and typical.loc["loyal_regular", "active_days"] >= 8
    assert typical.loc["premium_researcher", "median_price"] >= 2 * typical["median_price"].drop(
        "premium_researcher").max()
    assert typical.loc["bargain_hunter", "median_price"] <= typical["median_price"].min()
    assert typical.loc["bargain_hunter", "night"] >= 0.25 > typical["night"].drop("bargain_hunter").max()


def test_premium_researchers_stay_in_electronics(events: pd.DataFrame, truth: pd.DataFrame) -> None:
    researchers = set(truth.loc[truth["archetype"] == "premium_researcher", "user_id"])
    codes = events.loc[events["user_id"].isin(researchers), "category_code"]
    assert codes.notna().all()
    assert codes.str.split(".").str[0].isin(["electronics", "computers"]).all()


# --------------------------------------------------------------------------------------------------
# Options, determinism and caching
# --------------------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    options = {"users": 500, "start": "2019-11-28", "days": 3, "progress": False}
    first = generate_events(tmp_path / "a", seed=1, **options)
    second = generate_events(tmp_path / "b", seed=1, **options)
    other = generate_events(tmp_path / "c", seed=2, **options)
    assert [f.name for f in first.files] == [f.name for f in second.files] == ["2019-Nov.csv.gz"]
    assert first.files[0].read_bytes() == second.files[0].read_bytes()
    assert first.truth_file.read_bytes() == second.truth_file.read_bytes()
    assert first.files[0].read_bytes() != other.files[0].read_bytes()


def test_day_split_gzip_and_no_header(tmp_path: Path) -> None:
    result = generate_events(tmp_path, users=300, start="2019-12-30", days=4, seed=3, split="day",
                             gzip=True, header=False, progress=False)
    names = [f.name for f in result.files]
    assert names == ["2019-12-30.csv.gz", "2019-12-31.csv.gz", "2020-01-01.csv.gz", "2020-01-02.csv.gz"]
    rows = 0
    for path in result.files:
        lines = gzip.decompress(path.read_bytes()).decode("ascii").splitlines()
        assert lines and lines[0] != HEADER
        assert all(LINE.fullmatch(line) for line in lines)
        assert {line[:10] for line in lines} == {path.name[:10]}  # one day per file
        rows += len(lines)
    assert rows == result.events
    assert len(read_events(result.files, header=False)) == result.events  # pandas reads .gz directly


def test_same_arguments_reuse_the_generation_and_new_ones_replace_it(tmp_path: Path) -> None:
    options = {"users": 200, "start": "2019-11-01", "days": 2, "seed": 5, "progress": False}
    first = generate_events(tmp_path, split="day", gzip=False, **options)
    stamps = {f: f.stat().st_mtime_ns for f in first.files}
    unrelated = tmp_path / "notes.csv"
    unrelated.write_text("keep me\n")

    again = generate_events(tmp_path, split="day", gzip=False, **options)
    assert again == first
    assert {f: f.stat().st_mtime_ns for f in again.files} == stamps  # nothing rewritten

    replaced = generate_events(tmp_path, split="month", gzip=False, **options)
    assert not any(f.exists() for f in first.files)  # stale day files removed
    assert sorted(tmp_path.glob("*.csv")) == sorted([*replaced.files, unrelated])
    assert unrelated.read_text() == "keep me\n"


def test_command_line_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--users", "100", "--start", "2019-10-01", "--days", "1",
                              "--seed", "9", "--split", "day", "--no-gzip", "--no-header", "--no-progress"])
    assert run(args) == 0
    assert "events" in capsys.readouterr().out
    assert [p.name for p in tmp_path.glob("*.csv")] == ["2019-10-01.csv"]
    assert not (tmp_path / "2019-10-01.csv").read_text().startswith("event_time")
    defaults = parser.parse_args([])
    assert (defaults.gzip, defaults.header, defaults.progress, defaults.split) == (True, True, True, "month")


def test_defect_rate_injects_each_kind_of_real_world_defect(tmp_path: Path) -> None:
    clean = generate_events(tmp_path / "clean", users=600, days=5, seed=5, gzip=False, progress=False)
    damaged = generate_events(tmp_path / "damaged", users=600, days=5, seed=5, gzip=False, progress=False,
                              defect_rate=0.01)

    def data_lines(result: GeneratedEvents) -> list[str]:
        return [line for path in result.files for line in path.read_text().splitlines()[1:]]

    clean_lines, damaged_lines = data_lines(clean), data_lines(damaged)
    assert len(clean_lines) == clean.events and len(damaged_lines) == damaged.events
    assert all(line.count(",") == 8 for line in clean_lines)
    intact = [line.split(",") for line in damaged_lines if line.count(",") == 8]
    truncated = sum(line.count(",") != 8 for line in damaged_lines)
    negative = sum(fields[6].startswith("-") for fields in intact)
    no_session = sum(fields[8] == "" for fields in intact)
    # Clean files already hold a few natural exact duplicates (same view twice in a second), as REES46 does.
    duplicates = (len(damaged_lines) - len(set(damaged_lines))) - (len(clean_lines) - len(set(clean_lines)))
    assert min(truncated, negative, no_session, duplicates) > 0
    assert damaged.events - clean.events == duplicates
    # About 1% of the lines, split over the four kinds.
    assert 0.005 < (truncated + negative + no_session + duplicates) / clean.events < 0.02


# --------------------------------------------------------------------------------------------------
# The calibrated world, the world with no segments and the cosmetics flavour (docs/calibration.md)
# --------------------------------------------------------------------------------------------------

CALIBRATION_USERS = 20_000  # the scale of the table in docs/calibration.md (about 2 s to generate)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedEvents:
    """A month of the default (calibrated) world, as `segments generate` writes it."""
    return generate_events(tmp_path_factory.mktemp("calibrated"), users=CALIBRATION_USERS, start="2019-10-01",
                           days=31, seed=42, gzip=False, progress=False)


def test_calibrated_world_matches_every_target_within_ten_percent(calibrated: GeneratedEvents) -> None:
    figures = calibration.generated_figures(calibrated.files)
    off = {figure: (value, target) for figure, target, value, _ in calibration.calibration_table(figures)
           if abs(value / target - 1.0) > 0.10}
    assert not off, off
    # The real multi-category store logs no remove_from_cart; most shoppers come one to three times.
    assert figures["remove_share"] == 0.0
    assert figures["shoppers_with_1_to_3_sessions"] > 0.6


def test_calibrated_world_plants_a_minority_of_archetypes_among_background_shoppers(
        calibrated: GeneratedEvents) -> None:
    truth = pd.read_csv(calibrated.truth_file)
    shares = truth["archetype"].value_counts(normalize=True)
    assert set(shares.index) == {*ARCHETYPES, BACKGROUND}
    assert shares[BACKGROUND] == pytest.approx(1 - CALIBRATED_ARCHETYPE_SHARE, abs=0.01)
    for archetype in ARCHETYPES:  # equal parts of the planted minority
        assert shares[archetype] == pytest.approx(CALIBRATED_ARCHETYPE_SHARE / len(ARCHETYPES), rel=0.2)


def test_no_segment_world_has_only_background_shoppers_with_the_real_shape(tmp_path: Path) -> None:
    result = generate_events(tmp_path, users=CALIBRATION_USERS, start="2019-10-01", days=31, seed=42, gzip=False,
                             progress=False, world="no_segments")
    truth = pd.read_csv(result.truth_file)
    assert set(truth["archetype"]) == {BACKGROUND} and len(truth) == CALIBRATION_USERS
    figures = calibration.generated_figures(result.files)
    # The shape within 10 %, the catalogue marginals within 15 % (docs/calibration.md). Buying does not
    # depend on the shopper here (no segments), so the same purchases spread over more buyers.
    tolerance = {t.figure: 0.15 if t.source == calibration.REAL_SAMPLE else 0.10 for t in calibration.TARGETS}
    off = {figure: (value, target) for figure, target, value, _ in calibration.calibration_table(figures)
           if figure != "buyer_share" and abs(value / target - 1.0) > tolerance[figure]}
    assert not off, off
    assert 0.11 < figures["buyer_share"] < 0.25
    assert figures["remove_share"] == 0.0


def test_cosmetics_flavour_logs_removals_in_a_fifth_of_its_events(tmp_path: Path) -> None:
    result = generate_events(tmp_path, users=CALIBRATION_USERS, start="2019-10-01", days=31, seed=42,
                             gzip=False, progress=False, flavour="cosmetics")
    figures = calibration.generated_figures(result.files)
    (target,) = calibration.COSMETICS_TARGETS
    assert figures["remove_share"] == pytest.approx(target.value, rel=0.10)


def test_world_and_flavour_options_are_checked_and_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="world must be one of"):
        generate_events(tmp_path, users=10, world="flat")
    with pytest.raises(ValueError, match="flavour must be one of"):
        generate_events(tmp_path, users=10, flavour="grocery")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.world, defaults.flavour) == ("calibrated", "multi_category")
    args = parser.parse_args(["--out", str(tmp_path), "--users", "50", "--days", "2", "--no-progress",
                              "--world", "no_segments"])
    assert run(args) == 0
    assert set(pd.read_csv(tmp_path / "truth" / "user_archetypes.csv")["archetype"]) == {BACKGROUND}
