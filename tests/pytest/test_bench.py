"""The benchmark command keeps working (docs/benchmarks.md): a tiny run, end to end, in CI; and its Polars
reference computes what the pandas reference computes.

No timing is asserted (the machines are noisy); the run must finish every step and report the
figures and ratios it promises.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import NOVEMBER_HEAD, OCTOBER_HEAD, PROJECT
from shopper_segments.bench import polars_features
from shopper_segments.generate import generate_events
from shopper_segments.model import reference_features


def test_the_benchmark_command_runs_every_step_and_prints_the_ratios(tmp_path):
    figures = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "shopper_segments.cli", "bench", "--users", "400", "--days", "3",
         "--start", "2019-11-29", "--cache", str(tmp_path / "cache"), "--workdir", str(tmp_path / "work"),
         "--json", str(figures)],
        cwd=PROJECT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(figures.read_text())
    steps = {step["name"]: step for step in report["steps"]}
    assert set(steps) == {
        "bare DuckDB scan + GROUP BY", "Polars reference features", "pandas reference features", "pipeline: load",
        "pipeline: dbt build", "one more day: load", "one more day: dbt build",
    }
    assert all(step["seconds"] and step["max_rss_mb"] > 0 for step in steps.values()), steps
    build = steps["pipeline: dbt build"]["stages"]  # each stage of the pipeline ran
    for stage in ("staging", "sessions", "features", "fit", "scoring", "analyses", "tests"):
        assert build[stage] > 0, (stage, build)
    assert report["history_events"] + report["day_events"] > 0 and report["pandas_finished"]
    for ratio in ("ratio_pipeline_to_bare_scan", "ratio_pipeline_to_polars", "memory_vs_polars", "speedup_vs_pandas",
                  "memory_vs_pandas", "ratio_one_day_to_full"):
        assert report[ratio] > 0, ratio
    for line in ("pipeline / bare scan:", "pipeline / Polars reference time:", "pandas / pipeline time:",
                 "one more day / full pipeline:"):
        assert line in result.stdout


@pytest.mark.parametrize("world", ["calibrated", "planted"])
def test_the_polars_reference_computes_the_pandas_references_features(tmp_path, world):
    """The benchmark's Polars reference is the same computation as the pandas one (which the suite checks
    against the warehouse's user_features): same shoppers, same columns, same values, on generated files
    with defects, on the real heads (one with a header and a truncated last line, one without) and on
    lines with too many or too few fields."""
    generated = generate_events(tmp_path, users=1500, start="2019-11-27", days=4, seed=5, split="day", gzip=False,
                                progress=False, defect_rate=0.02, world=world)
    ragged = tmp_path / "ragged.csv"  # lines with too many fields are skipped, a short one is incomplete
    ragged.write_text("2019-11-28 10:00:00 UTC,view,1,2,,,1.00,5,s1\n2019-11-28 10:00:02 UTC,view,1,2,,,1.00,5,s2,x\n"
                      "2019-11-28 10:00:03 UTC,view,1,2,,,1.00,6,s3,x,y\n2019-11-28 10:00:01 UTC,view,1,2,,,1.00,7\n")
    files = [*generated.files, OCTOBER_HEAD, NOVEMBER_HEAD, ragged]
    calendar = pd.read_csv(PROJECT / "seeds" / "marketing_calendar.csv", parse_dates=["calendar_date"])
    marketing_days = set(calendar["calendar_date"].dt.date)
    expected = reference_features.user_features(reference_features.read_events(files), marketing_days, (1, 7))
    expected = expected.sort_values("user_id").reset_index(drop=True)
    expected["revenue"] = expected["revenue"].astype(float)
    actual = polars_features.features_of_files(files, marketing_days, (1, 7)).to_pandas()
    assert sorted(actual.columns) == sorted(expected.columns)
    assert len(actual) == len(expected) > 1500
    pd.testing.assert_frame_equal(actual[expected.columns], expected, check_dtype=False, rtol=1e-12, atol=1e-12)


def test_the_floor_script_runs_each_step_of_a_stored_pipeline_against_the_bare_scan(tmp_path):
    """docs/benchmarks.md, "The floor of a stored pipeline": every step runs on real files and is
    printed with its ratio to the bare scan of the same run."""
    generated = generate_events(tmp_path / "lake", users=300, start="2019-11-29", days=2, seed=3, split="day",
                                gzip=False, progress=False)
    last = sorted(generated.files)[-1]
    result = subprocess.run(
        [sys.executable, "-m", "shopper_segments.bench.floor", str(tmp_path / "lake"), "--exclude", last.name,
         "--workdir", str(tmp_path)],
        cwd=PROJECT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = result.stdout.splitlines()
    for step in ("bare scan + GROUP BY per shopper (the floor)", "store the lines' nine fields as text", "type them",
                 "remove exact duplicates", "one aggregation per session", "one aggregation per shopper",
                 "stored path (every step after the scan)"):
        [line] = [line for line in printed if line.startswith(step)]
        assert line.endswith("x") and float(line.split()[-1].rstrip("x")) > 0, line
    assert list(tmp_path.glob("segments-floor-*")) == []  # its DuckDB file is removed
