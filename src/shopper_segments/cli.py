"""The `segments` command: generate demo events, land event files, run dbt.

    segments demo                      generate the demo month (once) and run the main job on it
    segments run [--events PATH]       land new event files, then `dbt build` (and `segments fit` where needed)
    segments load [--events PATH]      land new event files only
    segments fit [--retrain]           fit the model (the dbt Python models' tables) on the current data
    segments dbt -- <dbt arguments>    dbt with this project's folder and profiles
    segments generate --out DIR ...    write realistic demo event files
    segments query "SQL"               run a read-only query on the DuckDB warehouse
    segments report [--output PATH]    the segment report for the business: one self-contained HTML file
    segments erase --request-id R --user-id U   record a right-to-be-forgotten request (docs/gdpr.md)
    segments pseudonym --user-id U     the pseudonym of a user id under SEGMENTS_PSEUDONYMISATION_KEY
    segments bench [--users N]         the benchmark of docs/benchmarks.md

The warehouse is chosen by SEGMENTS_TARGET (duckdb, postgres, redshift; profiles/profiles.yml).
dbt has Python models on DuckDB only: on the other warehouses `segments run` builds up to the
features, runs `segments fit` (same fitting code, parameters written to the warehouse), then builds
the SQL scoring and reports. See docs/deployment.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import settings
from .operational_errors import (OperationalError, check_warehouse_is_free, explain_dbt_failure,
                                 explain_operational_error)

DEMO_DEFECT_RATE = 0.0003
# `segments report`: where it writes, and how many scored shoppers its PCA scatter draws.
DEFAULT_REPORT = "reports/segment_report.html"
DEFAULT_PCA_SAMPLE = 4000


def dbt_env() -> dict[str, str]:
    """Environment for dbt: this project's profiles and an absolute DuckDB path."""
    env = dict(os.environ)
    env.setdefault("DBT_PROFILES_DIR", str(settings.project_dir() / "profiles"))
    env["SEGMENTS_DUCKDB_PATH"] = str(settings.duckdb_path())
    env["SEGMENTS_PRIVACY_DUCKDB_PATH"] = str(settings.privacy_duckdb_path())
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env


def run_dbt(args: list[str], reuse_parse: bool = True) -> int:
    """Run dbt in the project folder; returns its exit code."""
    return invoke_dbt(args, reuse_parse).exit_code


def invoke_dbt(args: list[str], reuse_parse: bool = True):
    """Run dbt in the project folder, in this process (dbt_invocation): the exit code and dbt's result.
    `reuse_parse=False` for a command typed by the user (`segments dbt`): it parses as dbt would."""
    from .dbt_invocation import invoke

    if settings.target() == "duckdb":
        from .ingest.privacy import ensure_private_file

        ensure_private_file(settings.privacy_duckdb_path())
    print("$ dbt " + " ".join(args), flush=True)
    invocation = invoke(args, settings.project_dir(), dbt_env(), reuse_parse=reuse_parse)
    # A model stopped by a full disk: one sentence, as for the loader.
    limit = explain_dbt_failure(invocation.result) if invocation.exit_code else None
    if limit:
        raise OperationalError(limit)
    return invocation


# dbt selector of everything that reads the tables `segments fit` writes (warehouses without Python models).
FITTED_CONSUMERS = "source:fitted+"


# Exit code of a run that quarantined at least one event file (the other files are landed and built).
QUARANTINE_EXIT_CODE = 2


def land_files(args: argparse.Namespace):
    """Land the new event files; returns the LoadResult (quarantined files included)."""
    from .ingest.loader import load_event_files, open_raw_warehouse

    target = settings.target()
    location = settings.events_location(args.events, target)
    where = settings.duckdb_path() if target == "duckdb" else f"the {target} warehouse"
    warehouse = open_raw_warehouse(target, settings.duckdb_path(), settings.raw_schema())
    print(f"Landing event files from {location} into {where}{warehouse.limits_note()}")
    try:
        result = load_event_files(warehouse, location)
    finally:
        warehouse.close()
    print(result.summary())
    return result


def report_quarantine(result) -> int:
    """The summary of the quarantined files on stderr; the exit code they call for."""
    if not result.quarantined:
        return 0
    print(f"ERROR: {len(result.quarantined)} event file(s) quarantined, nothing of them stored "
          "(the other files were processed; see raw.event_files / stg_event_loads):", file=sys.stderr)
    for name, reason in result.quarantined:
        print(f"  event file {name}: {reason}", file=sys.stderr)
    print("Fix or replace these files and run again: a file whose content changed is retried "
          "(docs/data_quality.md).", file=sys.stderr)
    return QUARANTINE_EXIT_CODE


def cmd_load(args: argparse.Namespace) -> int:
    return report_quarantine(land_files(args))


def _dbt_vars(dbt_args: list[str]) -> dict:
    """The `--vars` mapping among extra dbt arguments (the fit honours them as dbt does)."""
    from .model.fit import parse_vars

    for index, arg in enumerate(dbt_args):
        if arg.startswith("--vars=") or (arg == "--vars" and index + 1 < len(dbt_args)):
            return parse_vars(arg.split("=", 1)[1] if "=" in arg else dbt_args[index + 1])
    return {}


def _with_vars(dbt_args: list[str], dbt_vars: dict) -> list[str]:
    """`dbt_args` with their `--vars` replaced by `dbt_vars` (one JSON mapping; none when empty)."""
    rest = [arg for index, arg in enumerate(dbt_args)
            if arg != "--vars" and not arg.startswith("--vars=") and (index == 0 or dbt_args[index - 1] != "--vars")]
    return [*(["--vars", json.dumps(dbt_vars, sort_keys=True)] if dbt_vars else []), *rest]


def fit_outside_dbt(retrain: bool, cli_vars: dict) -> int:
    """Write the Python models' tables with `segments fit` (warehouses without dbt Python models)."""
    from .model.fit import run_fit

    print(f"$ segments fit{' --retrain' if retrain else ''} (target {settings.target()})", flush=True)
    started = time.perf_counter()
    run_fit(settings.target(), retrain=retrain, cli_vars=cli_vars)
    print(f"Fit finished in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .model.fit import parse_vars

    cli_vars = parse_vars(args.vars)
    if settings.target() == "duckdb":
        # On DuckDB the dbt Python model is the fit: run it.
        dbt_vars = {**cli_vars, **({"retrain": True} if args.retrain else {})}
        return run_dbt(["build", "--select", "segment_model", *_with_vars([], dbt_vars)])
    return fit_outside_dbt(args.retrain, cli_vars)


def _privacy_store(operation: str = "ensure_privacy_tables", dbt_vars: dict | None = None):
    """The privacy schema, after `dbt run-operation <operation>` has created its tables."""
    from .ingest.privacy import PrivacyStore

    if run_dbt(["run-operation", operation, *_with_vars([], dbt_vars or {})]) != 0:
        raise SystemExit(f"ERROR: the privacy check failed (dbt run-operation {operation}, see above); "
                         "nothing was landed or written.")
    return PrivacyStore(settings.target(), settings.privacy_duckdb_path(), settings.privacy_schema())


def prepare_privacy(rotate: bool, dbt_vars: dict) -> int:
    """Before a run lands anything: the run's privacy settings must be the warehouse's, and
    SEGMENTS_PSEUDONYMISATION_KEY (when set) the key it was built with, unless rotating. The key goes
    where the SQL reads it (the privacy schema), never into SQL text or logs."""
    from .ingest.privacy import KeyChangedError, store_pseudonymisation_key as store

    key = os.environ.get("SEGMENTS_PSEUDONYMISATION_KEY", "")
    if rotate and not key:
        print("ERROR: --rotate-key needs the new key in SEGMENTS_PSEUDONYMISATION_KEY.", file=sys.stderr)
        return 2
    privacy = _privacy_store("prepare_privacy", dbt_vars)
    try:
        if key and store(privacy.execute, privacy.schema, key, replace=rotate):
            print("Pseudonymisation key stored in the privacy schema.")
        privacy.commit()
    except KeyChangedError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    finally:
        privacy.close()
    return 0


def compact_after_erasure() -> None:
    """On DuckDB, rewrite the warehouse file once erasures have been applied (docs/gdpr.md)."""
    from .ingest.privacy import compact_duckdb_file, erasures_to_compact

    warehouse, privacy_file = settings.duckdb_path(), settings.privacy_duckdb_path()
    applied = erasures_to_compact(warehouse, privacy_file, settings.privacy_schema())
    if applied is not None:
        started = time.perf_counter()
        compact_duckdb_file(warehouse, privacy_file, settings.privacy_schema(), applied)
        print(f"Erasure applied: {warehouse} rewritten without the deleted rows' bytes "
              f"in {time.perf_counter() - started:.0f} s")


def cmd_erase(args: argparse.Namespace) -> int:
    from .ingest.privacy import RequestIdReusedError, record_erasure

    privacy = _privacy_store()
    try:
        new = record_erasure(privacy.execute, privacy.schema, args.request_id, args.user_id)
        privacy.commit()
    except RequestIdReusedError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    finally:
        privacy.close()
    print(f"Erasure request {args.request_id} {'recorded' if new else 'was already recorded'}: "
          "the next `segments run` removes the shopper from every table.")
    return 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    from .ingest.privacy import pseudonym

    key = os.environ.get("SEGMENTS_PSEUDONYMISATION_KEY", "")
    if not key:
        raise SystemExit("Set SEGMENTS_PSEUDONYMISATION_KEY (the key the warehouse was built with).")
    print(pseudonym(key, args.user_id))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.run(args)


def scope_data_tests(retrain: bool, dbt_args: list[str]) -> tuple[str, ...]:
    """Which rows the run's data tests read (macros/tests/test_scope.sql, where a full refresh reads all):
    on a daily run the loads not tested yet (or what SEGMENTS_DATA_TESTS says), on a retraining run all.
    Returns the build that goes with it: a daily one leaves out the tests of whole views."""
    os.environ["SEGMENTS_DATA_TESTS"] = "all" if retrain else os.environ.get("SEGMENTS_DATA_TESTS", "new")
    daily = os.environ["SEGMENTS_DATA_TESTS"].strip().lower() == "new" and "--full-refresh" not in dbt_args
    return settings.job_build(daily)


def cmd_run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    target = settings.target()
    dbt_args = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    rotate = getattr(args, "rotate_key", False)
    # One set of vars for every dbt call of the run (the privacy check, the build, the freshness), so
    # the project is parsed once (dbt_invocation).
    run_vars = {**_dbt_vars(dbt_args), **({"retrain": True} if args.retrain else {})}
    dbt_args = _with_vars(dbt_args, run_vars)
    status = prepare_privacy(rotate, run_vars)
    if status:
        return status
    if rotate and "--full-refresh" not in dbt_args:
        # Every pseudonym changes: every layer is rebuilt under the new key (docs/gdpr.md).
        dbt_args = [*dbt_args, "--full-refresh"]
    build = scope_data_tests(args.retrain, dbt_args)
    landing = land_files(args)  # quarantined files do not stop the others from being built
    if target == "duckdb":
        status = run_dbt([*build, *dbt_args])
        # Also after a failed test: what the models erased must leave the file's bytes.
        compact_after_erasure()
    else:
        # No dbt Python models here: build up to the features, fit, then score and report in SQL.
        status = run_dbt([*build, "--exclude", FITTED_CONSUMERS, *dbt_args])
        if status == 0:
            status = fit_outside_dbt(args.retrain, _dbt_vars(dbt_args))
        if status == 0:
            status = run_dbt([*build, "--select", FITTED_CONSUMERS, *dbt_args])
    if status == 0:
        status = report_drift(args, target, dbt_args)
    quarantine_status = report_quarantine(landing)  # said whatever dbt did; dbt's failure code comes first
    status = status or quarantine_status
    where = settings.duckdb_path() if target == "duckdb" else f"target {target}"
    print(f"Main job finished in {time.perf_counter() - started:.0f} s with exit code {status}; warehouse: {where}")
    return status


def report_drift(args: argparse.Namespace, target: str, dbt_args: list[str]) -> int:
    """After a build: one line of source freshness and one of drift; with --retrain-if-drifted, a new
    model version when the verdict is `retrain recommended` (docs/model.md, "Drift")."""
    from .model import drift

    from .dbt_invocation import parse_options

    # The build's vars: the manifest it parsed is reused. Stale files warn here; they do not fail the run.
    checked = invoke_dbt(["source", "freshness", *parse_options(dbt_args)])
    results = getattr(checked.result, "results", None)
    print(drift.freshness_line(results) if results is not None
          else "Source freshness: could not be checked (see dbt's message above).", flush=True)
    read_frame = drift.warehouse_reader(target, settings.duckdb_path())
    run = drift.newest_run(read_frame)
    print(drift.verdict_line(run), flush=True)
    if not getattr(args, "retrain_if_drifted", False) or args.retrain:
        return 0
    if run is None or run.empty or run.verdict.iloc[0] != drift.RETRAIN_VERDICT:
        print("--retrain-if-drifted: no retraining (the verdict is not `retrain recommended`).", flush=True)
        return 0
    print("--retrain-if-drifted: the verdict is `retrain recommended`: fitting a new model version.", flush=True)
    build = scope_data_tests(True, dbt_args)
    if target == "duckdb":
        status = run_dbt([*build, *_with_vars(dbt_args, {**_dbt_vars(dbt_args), "retrain": True})])
    else:
        status = (fit_outside_dbt(True, _dbt_vars(dbt_args))
                  or run_dbt([*build, "--select", FITTED_CONSUMERS, *dbt_args]))
    if status == 0:
        print(drift.verdict_line(drift.newest_run(read_frame)), flush=True)
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from .generate import generate_events

    out = settings.project_dir() / settings.DEFAULT_EVENTS
    # A few defective lines, as real files have, so the rejected table is not empty.
    generated = generate_events(
        out, users=args.users, start=args.start, days=args.days, seed=args.seed, defect_rate=DEMO_DEFECT_RATE
    )
    print(f"Demo events: {generated.events:,} events of {generated.users:,} shoppers in {out}")
    args.events = str(out)
    return cmd_run(args)


def cmd_generate(args: argparse.Namespace) -> int:
    from . import generate as generator

    return generator.run(args)


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    if not settings.duckdb_path().exists():
        raise OperationalError(f"There is no warehouse at {settings.duckdb_path()}: run `segments run` first, "
                               "or set SEGMENTS_DUCKDB_PATH to an existing warehouse file.")
    with duckdb.connect(str(settings.duckdb_path()), read_only=True) as con:
        frame = con.sql(args.sql).df()
    shown = frame if args.all else frame.head(50)
    print(shown.to_string(index=False))
    if len(frame) > len(shown):
        print(f"... {len(frame) - len(shown)} more rows (--all to show them)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    output = Path(args.output)
    output = output if output.is_absolute() else settings.project_dir() / output
    report = write_report(output, pca_sample=args.pca_sample)
    print(f"Segment report written to {output}")
    if report.unavailable:
        print(f"Not available (missing or empty tables): {', '.join(report.unavailable)}")
    if report.failed:
        print(f"ERROR: these parts could not be built (see above): {', '.join(report.failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_dbt(args: argparse.Namespace) -> int:
    from .dbt_invocation import typed_command_shares_parse

    extra = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    return run_dbt(extra, reuse_parse=typed_command_shares_parse(extra))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    load = commands.add_parser("load", help="land new event files in the warehouse")
    load.add_argument("--events", help="a file, a folder or a glob, or on Redshift an s3:// prefix "
                      "(default: $SEGMENTS_EVENTS or data/events/demo; on Redshift $SEGMENTS_S3_PREFIX)")
    load.set_defaults(func=cmd_load)

    fit = commands.add_parser("fit", help="fit the model on the current data (segments fit writes the "
                                          "Python models' tables on warehouses without dbt Python models)")
    fit.add_argument("--retrain", action="store_true",
                     help="fit a new model version even if one exists (only if the training inputs changed)")
    fit.add_argument("--vars", help="dbt vars overriding dbt_project.yml, as for dbt (YAML mapping)")
    fit.set_defaults(func=cmd_fit)

    run = commands.add_parser("run", help="land new event files, then dbt build (the main job)")
    run.add_argument("--events", help="a file, a folder or a glob, or on Redshift an s3:// prefix "
                     "(default: $SEGMENTS_EVENTS or data/events/demo; on Redshift $SEGMENTS_S3_PREFIX)")
    run.add_argument("--retrain", action="store_true", help="fit a new model version on the current data")
    run.add_argument("--retrain-if-drifted", action="store_true",
                     help="after the build, fit a new model version only if segment_drift's verdict for this run "
                          "is `retrain recommended` (docs/model.md, \"Drift\")")
    run.add_argument("--rotate-key", action="store_true",
                     help="rotate the pseudonymisation key: store the new SEGMENTS_PSEUDONYMISATION_KEY and "
                          "rebuild every layer under it (implies dbt's --full-refresh; docs/gdpr.md)")
    run.add_argument("dbt_args", nargs=argparse.REMAINDER,
                     help="extra arguments for dbt build, after -- (e.g. -- --vars '{n_segments: 5}')")
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
    from . import generate as generator

    generator.add_arguments(generate)
    generate.set_defaults(func=cmd_generate)

    query = commands.add_parser("query", help="run a read-only SQL query on the DuckDB warehouse")
    query.add_argument("sql")
    query.add_argument("--all", action="store_true", help="print every row (default: the first 50)")
    query.set_defaults(func=cmd_query)

    report = commands.add_parser("report", help="write the segment report (self-contained HTML) from the warehouse")
    report.add_argument("--output", default=DEFAULT_REPORT, help=f"the HTML file to write (default: {DEFAULT_REPORT})")
    report.add_argument("--pca-sample", type=int, default=DEFAULT_PCA_SAMPLE,
                        help=f"scored shoppers drawn in the PCA scatter (default: {DEFAULT_PCA_SAMPLE})")
    report.set_defaults(func=cmd_report)

    erase = commands.add_parser("erase", help="record a right-to-be-forgotten request (docs/gdpr.md)")
    erase.add_argument("--request-id", required=True, help="the privacy team's reference of the request")
    erase.add_argument("--user-id", required=True, type=int, help="the shopper's REES46 user id")
    erase.set_defaults(func=cmd_erase)

    pseudonym = commands.add_parser("pseudonym", help="the pseudonym of a user id (SEGMENTS_PSEUDONYMISATION_KEY)")
    pseudonym.add_argument("--user-id", required=True, type=int)
    pseudonym.set_defaults(func=cmd_pseudonym)

    bench = commands.add_parser("bench", help="benchmark the pipeline against a bare scan and pandas")
    from . import bench as bench_module

    bench_module.add_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    dbt = commands.add_parser("dbt", help="run dbt with this project's folder and profiles")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    dbt.set_defaults(func=cmd_dbt)
    return parser


# Commands that write the DuckDB warehouse, some through dbt: its lock is checked first, so
# that a second run gets one clear sentence rather than dbt's failure.
WAREHOUSE_WRITERS = {"load", "run", "demo", "fit", "erase"}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected operational failures end with one sentence on stderr and exit 1, no traceback."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in WAREHOUSE_WRITERS and settings.target() == "duckdb":
            check_warehouse_is_free()
        return args.func(args)
    except Exception as error:  # noqa: BLE001 - sorted below: expected conditions get a sentence, bugs a traceback
        message = explain_operational_error(error)
        if message is None:
            raise
        print(f"ERROR: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
