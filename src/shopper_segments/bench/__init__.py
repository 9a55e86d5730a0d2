"""Benchmarks: the pipeline at scale, where its time goes, and two references on the same files.

    segments bench --users 500000 --days 32      # about a month of events, then one more day

In one run, on the same generated daily files (the project's generator, cached on disk):
1. **bare scan**: DuckDB reads the files and computes per-shopper aggregates in one GROUP BY —
   the least any engine must do;
2. **Polars reference**: the same user features with a Polars lazy scan and the streaming engine
   (`polars_features.py`), what a data scientist would pick today;
3. **pandas reference**: the same user features computed the usual notebook way
   (`reference_features.py`), under a memory cap so that it fails cleanly if it cannot finish;
4. **pipeline**: a fresh DuckDB warehouse; `segments load` of all days but the last, then
   `dbt build` (per stage: staging, sessions, features, fit, scoring, tests, from run_results.json);
5. **one more day**: `segments load` of the last day, then `dbt build` (incremental), its data tests
   reading the new loads as in a daily `segments run` (SEGMENTS_DATA_TESTS=new).
Every step runs as its own process: wall time, events per second and the process's peak memory
(max RSS). Quote ratios measured in one run: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings

# dbt nodes grouped into the stages the report shows.
STAGES = {
    "staging": ("base_event_lines", "base_pending_event_lines", "stg_events", "stg_events_rejected", "stg_event_loads"),
    "sessions": ("int_sessions",),
    "features": ("int_user_features", "user_features"),
    "fit": ("segment_model",),
    "scoring": ("user_segments", "segment_profiles", "segment_labels", "segment_model_metrics"),
    # The model-quality analyses: once per model version, on bounded samples (docs/model.md).
    "analyses": ("segment_k_selection", "segment_feature_analysis", "segment_method_comparison",
                 "segment_threshold_curve", "segment_classifier_cv", "segment_rules"),
}


@dataclass
class Step:
    name: str
    events: int
    seconds: float | None  # None: the step did not finish
    max_rss_mb: float
    stages: dict[str, float] = field(default_factory=dict)  # dbt stage -> seconds
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "events": self.events,
            "seconds": None if self.seconds is None else round(self.seconds, 2),
            "events_per_second": round(self.events / self.seconds) if self.seconds else None,
            "max_rss_mb": round(self.max_rss_mb),
            "stages": {k: round(v, 2) for k, v in self.stages.items() if v >= 0.005},
            "note": self.note,
        }


def run_measured(command: list[str], env: dict[str, str], cwd: Path, must_succeed: bool = True
                 ) -> tuple[float | None, float, str]:
    """Run a command; return (wall seconds or None if it failed, peak RSS in MB, output tail)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        if must_succeed:
            raise SystemExit(f"{' '.join(command)} failed ({code}):\n{output[-4000:]}")
        return None, usage.ru_maxrss / 1024, output[-2000:]
    return seconds, usage.ru_maxrss / 1024, output[-2000:]


def dbt_stage_seconds(target_dir: Path) -> dict[str, float]:
    """Seconds per stage from dbt's run_results.json (tests counted apart; threads overlap)."""
    results = json.loads((target_dir / "run_results.json").read_text())["results"]
    stages = {name: 0.0 for name in (*STAGES, "tests", "other")}
    for result in results:
        node = result["unique_id"].split(".")
        kind, name = node[0], node[-1]
        if kind in ("test", "unit_test"):
            stages["tests"] += result["execution_time"]
            continue
        stage = next((s for s, names in STAGES.items() if name in names), "other")
        stages[stage] += result["execution_time"]
    return stages


class BenchWarehouse:
    """A fresh DuckDB warehouse in `workdir`, driven through the `segments` command."""

    def __init__(self, workdir: Path):
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        self.target_dir = workdir / "target"
        self.env = dict(os.environ)
        self.env.update(
            SEGMENTS_PROJECT_DIR=str(settings.project_dir()),
            SEGMENTS_TARGET="duckdb",
            SEGMENTS_DUCKDB_PATH=str(workdir / "warehouse.duckdb"),
            DBT_TARGET_PATH=str(self.target_dir),
            DBT_LOG_PATH=str(workdir / "logs"),
        )

    def segments(self, name: str, events: int, *args: str, **env: str) -> Step:
        seconds, rss, _ = run_measured([sys.executable, "-m", "shopper_segments.cli", *args], {**self.env, **env},
                                       settings.project_dir())
        stages = dbt_stage_seconds(self.target_dir) if args[0] == "dbt" else {}
        return Step(name, events, seconds, rss, stages)


# ---------------------------------------------------------------------------------------------
# The references, run in their own processes (`python -m shopper_segments.bench --worker ...`)
# ---------------------------------------------------------------------------------------------

def bare_scan(files: list[str]) -> int:
    """DuckDB reads the files and aggregates per shopper in one GROUP BY: no validation, no history."""
    import duckdb

    con = duckdb.connect()
    rows = con.sql(
        f"""
        select count(*) from (
            select
                user_id,
                count(*) as events,
                count(distinct user_session) as sessions,
                count(distinct product_id) as products,
                sum(case when event_type = 'view' then 1 else 0 end) as views,
                sum(case when event_type = 'cart' then 1 else 0 end) as carts,
                sum(case when event_type = 'purchase' then price else 0 end) as revenue,
                avg(price) as avg_price,
                min(event_time) as first_event_at,
                max(event_time) as last_event_at
            from read_csv({files!r})
            group by user_id
        )
        """
    ).fetchall()[0][0]
    print(f"{rows} shoppers")
    return 0


def pandas_reference(files: list[str]) -> int:
    """The same user features, the notebook way (whole files in memory)."""
    from ..model import reference_features

    events = reference_features.read_events([Path(f) for f in files])
    features = reference_features.user_features(events, reference_features.marketing_days(settings.project_dir()))
    print(f"{len(features)} shoppers")
    return 0


def polars_reference(files: list[str]) -> int:
    """The same user features with Polars: one lazy plan, collected with the streaming engine."""
    from ..model import reference_features
    from .polars_features import features_of_files

    features = features_of_files([Path(f) for f in files],
                                 reference_features.marketing_days(settings.project_dir()))
    print(f"{len(features)} shoppers")
    return 0


def run_reference(name: str, worker: str, files: list[Path], events: int, memory_cap_gb: float) -> Step:
    if worker == "polars" and importlib.util.find_spec("polars") is None:
        return Step(name, events, None, 0.0, note="not run: polars is not installed (requirements/dev.txt)")
    command = [sys.executable, "-m", "shopper_segments.bench", "--worker", worker,
               "--memory-cap-gb", str(memory_cap_gb), *map(str, files)]
    seconds, rss, output = run_measured(command, dict(os.environ), settings.project_dir(), must_succeed=False)
    note = "" if seconds is not None else f"did not finish: {output.strip().splitlines()[-1] if output.strip() else '?'}"
    return Step(name, events, seconds, rss, note=note)


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------

def benchmark(users: int, days: int, start: str, seed: int, cache: Path, workdir: Path, pandas: bool,
              memory_cap_gb: float, polars: bool = True) -> dict:
    from ..generate import generate_events

    generated = generate_events(cache, users=users, start=start, days=days, seed=seed, split="day", gzip=False,
                                progress=True)
    files = sorted(generated.files)
    history, new_day = files[:-1], files[-1]
    lake = workdir / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    lake.mkdir(parents=True)
    for path in history:
        os.symlink(path, lake / path.name)
    with open(new_day) as handle:
        day_events = sum(1 for _ in handle) - 1
    history_events = generated.events - day_events

    steps = [run_reference("bare DuckDB scan + GROUP BY", "bare", history, history_events, memory_cap_gb)]
    if polars:
        steps.append(run_reference("Polars reference features", "polars", history, history_events, memory_cap_gb))
    if pandas:
        steps.append(run_reference("pandas reference features", "pandas", history, history_events, memory_cap_gb))
    warehouse = BenchWarehouse(workdir / "warehouse")
    steps += [
        warehouse.segments("pipeline: load", history_events, "load", "--events", str(lake)),
        # The main job's build (`segments run`): every model and data test, dbt's unit tests left out.
        warehouse.segments("pipeline: dbt build", history_events, "dbt", *settings.job_build(daily=False)),
        warehouse.segments("one more day: load", day_events, "load", "--events", str(new_day)),
        # As a daily `segments run` builds it: the data tests read the new loads (docs/data_quality.md).
        warehouse.segments("one more day: dbt build", day_events, "dbt", *settings.job_build(daily=True),
                           SEGMENTS_DATA_TESTS="new"),
    ]
    by_name = {step.name: step for step in steps}
    load, build = by_name["pipeline: load"], by_name["pipeline: dbt build"]
    day_load, day_build = by_name["one more day: load"], by_name["one more day: dbt build"]
    pipeline = load.seconds + build.seconds
    pipeline_models = load.seconds + sum(v for k, v in build.stages.items() if k != "tests")
    day = day_load.seconds + day_build.seconds
    day_models = day_load.seconds + sum(v for k, v in day_build.stages.items() if k != "tests")
    bare = by_name["bare DuckDB scan + GROUP BY"]
    report = {
        "machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "users": users, "days": days, "start": start, "seed": seed,
        "history_events": history_events, "day_events": day_events,
        "steps": [step.as_dict() for step in steps],
        "pipeline_seconds": round(pipeline, 2),
        "pipeline_max_rss_mb": round(max(load.max_rss_mb, build.max_rss_mb)),
        "ratio_pipeline_to_bare_scan": round(pipeline / bare.seconds, 2),
        "ratio_pipeline_models_to_bare_scan": round(pipeline_models / bare.seconds, 2),
        "ratio_one_day_to_full": round(day / pipeline, 3),
        "ratio_one_day_to_full_models_only": round(day_models / pipeline_models, 3),
    }
    polars_step = by_name.get("Polars reference features")
    if polars_step is not None and polars_step.seconds is not None:
        report["ratio_pipeline_to_polars"] = round(pipeline / polars_step.seconds, 2)
        report["memory_vs_polars"] = round(report["pipeline_max_rss_mb"] / polars_step.max_rss_mb, 2)
    if pandas:
        reference = by_name["pandas reference features"]
        report["pandas_finished"] = reference.seconds is not None
        if reference.seconds is not None:
            report["speedup_vs_pandas"] = round(reference.seconds / pipeline, 2)
        report["memory_vs_pandas"] = round(report["pipeline_max_rss_mb"] / reference.max_rss_mb, 2)
    return report


def print_report(report: dict) -> None:
    print(f"\n{report['machine']}; {report['history_events']:,} events ({report['days'] - 1} days from "
          f"{report['start']}, {report['users']:,} shoppers generated), then one day of {report['day_events']:,}")
    print(f"{'step':30} {'seconds':>8} {'events/s':>11} {'peak MB':>8}  dbt stages (s; threads overlap)")
    for step in report["steps"]:
        seconds = "-" if step["seconds"] is None else f"{step['seconds']:.1f}"
        rate = "-" if not step["events_per_second"] else f"{step['events_per_second']:,}"
        stages = ", ".join(f"{k} {v:.1f}" for k, v in step["stages"].items())
        print(f"{step['name']:30} {seconds:>8} {rate:>11} {step['max_rss_mb']:8.0f}  {stages}{step['note']}")
    print(f"pipeline (load + dbt build): {report['pipeline_seconds']:.1f} s, peak {report['pipeline_max_rss_mb']} MB")
    print(f"pipeline / bare scan: {report['ratio_pipeline_to_bare_scan']:.2f}x "
          f"(models only, without dbt tests: {report['ratio_pipeline_models_to_bare_scan']:.2f}x)")
    if "ratio_pipeline_to_polars" in report:
        print(f"pipeline / Polars reference time: {report['ratio_pipeline_to_polars']:.2f}x; "
              f"pipeline / Polars peak memory: {report['memory_vs_polars']:.2f}")
    if "pandas_finished" in report:
        if report["pandas_finished"]:
            print(f"pandas / pipeline time: {report['speedup_vs_pandas']:.2f}x; "
                  f"pipeline / pandas peak memory: {report['memory_vs_pandas']:.2f}")
        else:
            print("pandas reference did not finish (see its note)")
    print(f"one more day / full pipeline: {report['ratio_one_day_to_full']:.1%} "
          f"(models only: {report['ratio_one_day_to_full_models_only']:.1%})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=100_000, help="shoppers to generate (default: %(default)s)")
    parser.add_argument("--days", type=int, default=32,
                        help="days generated; the last one is added incrementally (default: %(default)s)")
    parser.add_argument("--start", default="2019-10-01", help="first day (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-pandas", dest="pandas", action="store_false", help="skip the pandas reference")
    parser.add_argument("--no-polars", dest="polars", action="store_false", help="skip the Polars reference")
    parser.add_argument("--memory-cap-gb", type=float, default=20.0,
                        help="address-space cap of the pandas reference (default: %(default)s)")
    parser.add_argument("--cache", default="data/bench", help="where generated files are kept between runs")
    parser.add_argument("--workdir", default="/tmp/shopper-segments-bench", help="scratch folder for warehouses")
    parser.add_argument("--json", help="also write the figures to this JSON file")


def run(args: argparse.Namespace) -> int:
    cache = Path(args.cache)
    cache = cache if cache.is_absolute() else settings.project_dir() / cache
    name = f"u{args.users}-d{args.days}-{args.start}-s{args.seed}"
    report = benchmark(args.users, args.days, args.start, args.seed, cache / name, Path(args.workdir),
                       args.pandas, args.memory_cap_gb, args.polars)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def _worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=("bare", "polars", "pandas"), required=True)
    parser.add_argument("--memory-cap-gb", type=float, required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    if args.worker == "pandas":  # DuckDB manages its own memory; pandas is capped to fail cleanly
        cap = int(args.memory_cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return {"bare": bare_scan, "polars": polars_reference, "pandas": pandas_reference}[args.worker](args.files)

