"""Where things are: the project folder, the DuckDB file, the event files.

Every default lives here once; the dbt profile reads the same environment variables
(`profiles/profiles.yml`), and a test checks that both agree on the DuckDB default.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DUCKDB_PATH = "warehouse/shopper_segments.duckdb"
DEFAULT_EVENTS = "data/events/demo"
# The privacy schema's file sits beside the warehouse: `x.duckdb` -> `x.privacy.duckdb` (the profile says the same).
PRIVACY_FILE_SUFFIX = ".privacy.duckdb"
DEFAULT_RAW_SCHEMA = "raw"
# The main job's dbt build (`segments run`, and the benchmark's): dbt's unit tests are left out, as dbt
# advises for production: their inputs are static, so every run would repeat the same result.
# `make check` and the test suite run them (docs/architecture.md).
JOB_BUILD = ("build", "--exclude-resource-type", "unit_test")
# Data tests that read a whole view whatever a day adds, tagged so in the YAML: a daily run leaves them
# out (their inputs are tested that day); every other build runs them (docs/data_quality.md).
FULL_RUNS_ONLY_TAG = "full_runs_only"


def job_build(daily: bool) -> tuple[str, ...]:
    """The main job's dbt build; a daily one leaves out the tests tagged FULL_RUNS_ONLY_TAG."""
    return (*JOB_BUILD, *(("--exclude", f"tag:{FULL_RUNS_ONLY_TAG}") if daily else ()))


def project_dir() -> Path:
    """The dbt project folder: $SEGMENTS_PROJECT_DIR, else the nearest parent of the cwd holding dbt_project.yml."""
    configured = os.environ.get("SEGMENTS_PROJECT_DIR")
    if configured:
        return Path(configured).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dbt_project.yml").is_file():
            return folder
    raise SystemExit(
        "Cannot find the shopper-segments project (no dbt_project.yml here or above). "
        "Run from the project folder or set SEGMENTS_PROJECT_DIR."
    )


def _in_project(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path if path.is_absolute() else project_dir() / path


def duckdb_path() -> Path:
    """The warehouse file used by the `duckdb` target."""
    return _in_project(os.environ.get("SEGMENTS_DUCKDB_PATH", DEFAULT_DUCKDB_PATH))


def privacy_duckdb_path() -> Path:
    """The privacy schema's own DuckDB file (key, suppression list, settings; docs/gdpr.md):
    $SEGMENTS_PRIVACY_DUCKDB_PATH, else beside the warehouse (`x.duckdb` -> `x.privacy.duckdb`)."""
    configured = os.environ.get("SEGMENTS_PRIVACY_DUCKDB_PATH")
    if configured:
        return _in_project(configured)
    warehouse = str(duckdb_path())
    return Path(warehouse.replace(".duckdb", "", 1) + PRIVACY_FILE_SUFFIX)


# DuckDB's memory limit by default: a real-shaped month peaks at 6.4 GB with it, for 10 % more time than
# with 75 % of RAM (docs/benchmarks.md, "Memory"). profiles/profiles.yml has the same default.
DEFAULT_DUCKDB_MEMORY_LIMIT = "6GB"


def duckdb_memory_limit() -> str:
    """DuckDB's memory limit, for dbt (profiles/profiles.yml reads the same variable) and the loader."""
    return os.environ.get("SEGMENTS_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT)


def events_location(given: str | None = None, target: str = "duckdb") -> Path | str:
    """Where raw event files are read from: `given` (--events), else $SEGMENTS_EVENTS (a file, a folder
    or a glob); on Redshift an s3:// URL (kept as text) is accepted, and $SEGMENTS_S3_PREFIX comes first."""
    if target == "redshift" and not given:
        given = os.environ.get("SEGMENTS_S3_PREFIX")
    location = given or os.environ.get("SEGMENTS_EVENTS", DEFAULT_EVENTS)
    if location.startswith("s3://"):
        if target != "redshift":
            raise SystemExit(f"{location}: S3 locations are landed on Redshift (SEGMENTS_TARGET=redshift); "
                             "on duckdb and postgres give a local file, folder or glob.")
        return location
    return Path(location) if given else _in_project(location)  # --events is relative to the working folder


def raw_schema() -> str:
    return os.environ.get("SEGMENTS_RAW_SCHEMA", DEFAULT_RAW_SCHEMA)


def privacy_schema() -> str:
    return os.environ.get("SEGMENTS_PRIVACY_SCHEMA", "privacy")


def target() -> str:
    return os.environ.get("SEGMENTS_TARGET", "duckdb")
