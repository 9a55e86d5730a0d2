"""The benchmark command keeps working (docs/benchmarks.md): a tiny run, end to end, in CI.

No timing is asserted (the machines are noisy); the run must finish every step and report the
figures and ratios it promises.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import PROJECT


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
        "bare DuckDB scan + GROUP BY", "pandas reference features", "pipeline: load", "pipeline: dbt build",
        "one more day: load", "one more day: dbt build",
    }
    assert all(step["seconds"] and step["max_rss_mb"] > 0 for step in steps.values()), steps
    build = steps["pipeline: dbt build"]["stages"]  # each stage of the pipeline ran
    for stage in ("staging", "sessions", "features", "fit", "scoring", "analyses", "tests"):
        assert build[stage] > 0, (stage, build)
    assert report["history_events"] + report["day_events"] > 0 and report["pandas_finished"]
    for ratio in ("ratio_pipeline_to_bare_scan", "speedup_vs_pandas", "memory_vs_pandas", "ratio_one_day_to_full"):
        assert report[ratio] > 0, ratio
    for line in ("pipeline / bare scan:", "pandas / pipeline time:", "one more day / full pipeline:"):
        assert line in result.stdout
