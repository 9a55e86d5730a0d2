"""Shared fixtures: real warehouses built by the real `segments` command and real dbt runs."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from cli_runner import run_segments

PROJECT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = PROJECT / "data" / "sample"
OCTOBER_HEAD = SAMPLE_DIR / "2019-Oct-head.csv"
NOVEMBER_HEAD = SAMPLE_DIR / "2019-Nov-head-noheader.csv"


@dataclass
class Warehouse:
    """A DuckDB warehouse in a temporary folder, driven through the project's own CLI."""

    workdir: Path

    @property
    def path(self) -> Path:
        return self.workdir / "warehouse.duckdb"

    @property
    def target_dir(self) -> Path:
        return self.workdir / "target"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SEGMENTS_PROJECT_DIR=str(PROJECT),
            SEGMENTS_DUCKDB_PATH=str(self.path),
            DBT_TARGET_PATH=str(self.target_dir),
            DBT_LOG_PATH=str(self.workdir / "logs"),
            DBT_PROFILES_DIR=str(PROJECT / "profiles"),
        )
        env.update(extra)
        return env

    def segments(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        """Run `segments <args>` as a user would; fail the test with its output when it fails."""
        result = run_segments(list(args), self.env(**env), PROJECT)
        if check and result.returncode != 0:
            pytest.fail(f"segments {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path), read_only=True)

    def df(self, sql: str) -> pd.DataFrame:
        with self.connect() as con:
            return con.sql(sql).df()

    def scalar(self, sql: str):
        with self.connect() as con:
            return con.sql(sql).fetchall()[0][0]

    def relations(self) -> list[str]:
        """Every table and view the project created, schema-qualified, from the catalogue."""
        with self.connect() as con:
            rows = con.sql(
                "select schema_name, table_name from duckdb_tables() "
                "union all select schema_name, view_name from duckdb_views() where not internal"
            ).fetchall()
        return sorted(f"{schema}.{name}" for schema, name in rows)

    def digest(self) -> dict[str, tuple]:
        """(rows, order-independent hash of every row) per relation: equal digests = no row changed."""
        digests = {}
        with self.connect() as con:
            for relation in self.relations():
                digests[relation] = con.sql(f"select count(*), bit_xor(hash(t)) from {relation} as t").fetchall()[0]
        return digests


def last_results(warehouse: Warehouse, kind: str) -> list[dict]:
    """The nodes of one kind (`test`, `unit_test`, `model`) in the warehouse's last dbt command's run_results."""
    results = json.loads((warehouse.target_dir / "run_results.json").read_text())["results"]
    return [node for node in results if node["unique_id"].startswith(f"{kind}.")]


def copy_warehouse(source: Warehouse, workdir) -> Warehouse:
    """A copy of a DuckDB warehouse: its file and its private companion (the privacy schema)."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = Warehouse(workdir)
    for path in source.workdir.glob("*.duckdb"):
        shutil.copy(path, workdir / path.name)
    return copy


def shared_temp_root(tmp_path_factory) -> Path:
    """The folder every pytest-xdist worker of this session sees (the session's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def session_lock(tmp_path_factory, name: str):
    """An exclusive lock shared by every worker of the session (one builder, the others wait)."""
    with open(shared_temp_root(tmp_path_factory) / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_once(tmp_path_factory, name: str, build: Callable[[Warehouse], None]) -> Warehouse:
    """A warehouse built once per test session, even across pytest-xdist workers; each worker gets
    its own copy of the files (tests may write to it, and DuckDB lets one process write a file)."""
    pristine = Warehouse(shared_temp_root(tmp_path_factory) / f"built-{name}")
    done = pristine.workdir / ".built"
    with session_lock(tmp_path_factory, name):
        if not done.exists():
            shutil.rmtree(pristine.workdir, ignore_errors=True)  # a builder that failed midway
            pristine.workdir.mkdir(parents=True)
            build(pristine)
            done.touch()
    copy = Warehouse(tmp_path_factory.mktemp(name))
    shutil.copytree(pristine.workdir, copy.workdir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built"))
    return copy


@pytest.fixture(scope="session", autouse=True)
def shared_dbt_parse(tmp_path_factory) -> None:
    """One dbt parse per set of vars for the whole session, whatever the warehouse: the parse cache of
    shopper_segments.dbt_invocation, in a folder every worker sees (dbt's partial parsing starts over for
    each warehouse, as the DuckDB file is part of the profile)."""
    os.environ["SEGMENTS_DBT_PARSE_CACHE"] = str(shared_temp_root(tmp_path_factory) / "dbt-parse-cache")


@pytest.fixture(scope="session")
def real_warehouse(tmp_path_factory) -> Warehouse:
    """The main job on the real October head: load + dbt build."""
    return built_once(tmp_path_factory, "real", lambda warehouse: warehouse.segments(
        "run", "--events", str(OCTOBER_HEAD)))


@pytest.fixture(scope="session")
def demo_events(tmp_path_factory):
    """A small generated demo: two weeks around Black Friday, daily files, every shopper a planted
    archetype (the `planted` world: the archetype recovery and stability tests rely on it)."""
    from shopper_segments.generate import generate_events

    return generate_events(
        tmp_path_factory.mktemp("demo_events"),
        users=3000,
        start="2019-11-25",
        days=14,
        seed=7,
        split="day",
        gzip=True,
        progress=False,
        defect_rate=0.002,
        world="planted",
    )


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory, demo_events) -> Warehouse:
    """The main job on generated data (plus the header-less real November head)."""

    def build(warehouse: Warehouse) -> None:
        warehouse.segments("load", "--events", str(NOVEMBER_HEAD))
        warehouse.segments("run", "--events", str(demo_events.files[0].parent))

    return built_once(tmp_path_factory, "demo", build)


# The test files that take longest, longest first (measured with `--durations`): `make test` runs
# files on two pytest-xdist workers in this order (`--dist loadfile --no-loadscope-reorder`), so
# the long ones start first and the short ones fill the gaps at the end. Other files follow in
# alphabetical order. Only the order changes: every test still runs.
LONGEST_FIRST = (
    "test_container.py",
    "test_gdpr.py",
    "test_postgres.py",
    "test_incremental.py",
    "test_worlds.py",
    "test_settings.py",
    "test_model_stability.py",
    "test_metadata.py",
    "test_browser.py",
    "test_pipeline.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file and among the others is kept
