"""The `segments` command: generate demo events, land event files, run dbt.

    segments demo                      generate the demo month (once) and run the main job on it
    segments run [--events PATH]       land new event files, then `dbt build`
    segments load [--events PATH]      land new event files only
    segments dbt -- <dbt arguments>    dbt with this project's folder and profiles
    segments generate --out DIR ...    write realistic demo event files
    segments query "SQL"               run a read-only query on the DuckDB warehouse
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from . import settings

DEMO_DEFECT_RATE = 0.0003


def _dbt_executable() -> str:
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else "dbt"


def dbt_env() -> dict[str, str]:
    """Environment for dbt: this project's profiles and an absolute DuckDB path."""
    env = dict(os.environ)
    env.setdefault("DBT_PROFILES_DIR", str(settings.project_dir() / "profiles"))
    env["SEGMENTS_DUCKDB_PATH"] = str(settings.duckdb_path())
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env


def run_dbt(args: list[str]) -> int:
    """Run dbt in the project folder; returns its exit code."""
    command = [_dbt_executable(), *args]
    print("$ dbt " + " ".join(args), flush=True)
    return subprocess.call(command, cwd=settings.project_dir(), env=dbt_env())


def cmd_load(args: argparse.Namespace) -> int:
    from .loader import DuckDBWarehouse, EventFileError, load_event_files

    if settings.target() != "duckdb":
        raise SystemExit(f"`segments load` lands files in DuckDB; target {settings.target()!r} is not supported yet")
    location = Path(args.events) if args.events else settings.events_location()
    print(f"Landing event files from {location} into {settings.duckdb_path()}")
    warehouse = DuckDBWarehouse(settings.duckdb_path(), settings.raw_schema())
    try:
        result = load_event_files(warehouse, location)
    except EventFileError as error:
        print(f"ERROR: event file {error}", file=sys.stderr)
        print("Nothing from this file was stored; earlier data is intact. Fix or remove the file and run again.",
              file=sys.stderr)
        return 2
    finally:
        warehouse.close()
    print(result.summary())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    status = cmd_load(args)
    if status:
        return status
    retrain = ["--vars", "{retrain: true}"] if args.retrain else []
    status = run_dbt(["build", *retrain, *args.dbt_args])
    print(f"Main job finished in {time.perf_counter() - started:.0f} s with exit code {status}; "
          f"warehouse: {settings.duckdb_path()}")
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from .generator import generate_events

    out = settings.project_dir() / settings.DEFAULT_EVENTS
    # A few defective lines, as real files have, so the rejected table is not empty.
    generated = generate_events(
        out, users=args.users, start=args.start, days=args.days, seed=args.seed, defect_rate=DEMO_DEFECT_RATE
    )
    print(f"Demo events: {generated.events:,} events of {generated.users:,} shoppers in {out}")
    args.events = str(out)
    return cmd_run(args)


def cmd_generate(args: argparse.Namespace) -> int:
    from . import generator

    return generator.run(args)


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    with duckdb.connect(str(settings.duckdb_path()), read_only=True) as con:
        frame = con.sql(args.sql).df()
    shown = frame if args.all else frame.head(50)
    print(shown.to_string(index=False))
    if len(frame) > len(shown):
        print(f"... {len(frame) - len(shown)} more rows (--all to show them)")
    return 0


def cmd_dbt(args: argparse.Namespace) -> int:
    extra = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    return run_dbt(extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    load = commands.add_parser("load", help="land new event files in the warehouse")
    load.add_argument("--events", help="a file, a folder or a glob (default: $SEGMENTS_EVENTS or data/events/demo)")
    load.set_defaults(func=cmd_load)

    run = commands.add_parser("run", help="land new event files, then dbt build (the main job)")
    run.add_argument("--events", help="a file, a folder or a glob (default: $SEGMENTS_EVENTS or data/events/demo)")
    run.add_argument("--retrain", action="store_true", help="fit a new model version on the current data")
    run.add_argument("dbt_args", nargs=argparse.REMAINDER, help="extra arguments for dbt build")
    run.set_defaults(func=cmd_run)

    demo = commands.add_parser("demo", help="generate the demo month (once) and run the main job on it")
    demo.add_argument("--users", type=int, default=20_000)
    demo.add_argument("--start", default="2019-11-01")
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--retrain", action="store_true", help="fit a new model version on the current data")
    demo.add_argument("dbt_args", nargs=argparse.REMAINDER, help="extra arguments for dbt build")
    demo.set_defaults(func=cmd_demo)

    generate = commands.add_parser("generate", help="write realistic demo event files")
    from . import generator

    generator.add_arguments(generate)
    generate.set_defaults(func=cmd_generate)

    query = commands.add_parser("query", help="run a read-only SQL query on the DuckDB warehouse")
    query.add_argument("sql")
    query.add_argument("--all", action="store_true", help="print every row (default: the first 50)")
    query.set_defaults(func=cmd_query)

    dbt = commands.add_parser("dbt", help="run dbt with this project's folder and profiles")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    dbt.set_defaults(func=cmd_dbt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
