"""The least a stored, incremental pipeline must do, step by step, against the bare scan.

    python -m shopper_segments.bench.floor data/bench/u3020000-d32-2019-10-01-s42 --exclude 2019-11-01.csv

The bare scan (`segments bench`'s floor) reads the files and aggregates per shopper once, keeping
nothing. A pipeline that keeps its data in the warehouse, so that a new day costs the day, pays at
least: storing the events as read, typing them, removing exact duplicates, one aggregation per
session and one per shopper. This runs each of those once, in one DuckDB file on disk, with the
profile's memory limit, without any rule, audit, fit or test, and prints each step's seconds and its
ratio to the bare scan measured in the same run (docs/benchmarks.md, "The floor of a stored pipeline").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from .. import settings

COLUMNS = "event_time, event_type, product_id, category_id, category_code, brand, price, user_id, user_session"


def steps(files: list[str]) -> list[tuple[str, str]]:
    """(name, SQL) of each step, in order; each reads what the step before it stored."""
    read = f"read_csv({files!r}, header = true)"
    return [
        ("bare scan + GROUP BY per shopper (the floor)", f"""
            create temp table bare as
            select user_id, count(*) as events, count(distinct user_session) as sessions,
                count(distinct product_id) as products,
                sum(case when event_type = 'purchase' then price else 0 end) as revenue,
                min(event_time) as first_event_at, max(event_time) as last_event_at
            from {read} group by user_id"""),
        ("store the lines' nine fields as text", f"""
            create table landed as select * from read_csv({files!r}, header = true, all_varchar = true)"""),
        ("type them", """
            create table typed as
            select cast(substring(event_time, 1, 19) as timestamp) as event_time, event_type,
                cast(product_id as bigint) as product_id, cast(category_id as bigint) as category_id,
                category_code, brand, cast(price as decimal(28, 6)) as price,
                cast(user_id as bigint) as user_id, user_session
            from landed"""),
        ("remove exact duplicates (GROUP BY the nine fields)", f"""
            create table events as select {COLUMNS} from typed group by {COLUMNS}"""),
        ("one aggregation per session", """
            create table sessions as
            select user_id, user_session, count(*) as events, min(event_time) as session_start,
                max(event_time) as session_end, count(distinct product_id) as products,
                sum(case when event_type = 'purchase' then price end) as revenue
            from events group by user_id, user_session"""),
        ("one aggregation per shopper", """
            create table shoppers as
            select user_id, count(*) as events, count(distinct product_id) as products,
                count(distinct category_id) as categories, count(distinct cast(event_time as date)) as days
            from events group by user_id"""),
    ]


def measure(files: list[str], workdir: Path) -> list[tuple[str, float]]:
    """Run the steps in a new DuckDB file in `workdir`; return (name, seconds) of each."""
    con = duckdb.connect(str(workdir / "floor.duckdb"),
                         config={"memory_limit": settings.duckdb_memory_limit(), "temp_directory": str(workdir)})
    timings = []
    for name, sql in steps(files):
        start = time.perf_counter()
        con.execute(sql)
        timings.append((name, time.perf_counter() - start))
    con.close()
    return timings


def report(timings: list[tuple[str, float]]) -> str:
    floor = timings[0][1]
    stored = sum(seconds for _, seconds in timings[1:])
    lines = [f"{'step':<52} {'seconds':>8} {'/ bare scan':>11}"]
    lines += [f"{name:<52} {seconds:>8.1f} {seconds / floor:>10.2f}x" for name, seconds in timings]
    lines.append(f"{'stored path (every step after the scan)':<52} {stored:>8.1f} {stored / floor:>10.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shopper_segments.bench.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of REES46 CSV files (with header)")
    parser.add_argument("--exclude", action="append", default=[], help="a file name to leave out (repeatable)")
    parser.add_argument("--workdir", type=Path, help="where the DuckDB file goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    files = sorted(str(path) for path in args.folder.glob("*.csv") if path.name not in args.exclude)
    if not files:
        parser.error(f"no .csv file in {args.folder}")
    with tempfile.TemporaryDirectory(prefix="segments-floor-", dir=args.workdir) as workdir:
        print(report(measure(files, Path(workdir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
