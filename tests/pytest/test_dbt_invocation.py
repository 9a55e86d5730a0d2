"""dbt in the `segments` process (shopper_segments.dbt_invocation): the parse shared between
processes through SEGMENTS_DBT_PARSE_CACHE is taken only for the same project parsed the same way,
and a run from it gives what a run after dbt's own parse gives."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import PROJECT
from shopper_segments import dbt_invocation
from shopper_segments.dbt_invocation import PARSED_FILES, PARSED_FOLDERS, cache_key


def environment(folder, **extra: str) -> dict[str, str]:
    return {
        "SEGMENTS_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(folder / "target"),
        "DBT_LOG_PATH": str(folder / "logs"),
        "DBT_PROFILES_DIR": str(PROJECT / "profiles"),
        **extra,
    }


@pytest.fixture
def project_copy(tmp_path):
    """The files dbt parses, in a folder of their own (the test edits them)."""
    copy = tmp_path / "project"
    for name in PARSED_FOLDERS:
        if (PROJECT / name).exists():
            shutil.copytree(PROJECT / name, copy / name)
    for name in PARSED_FILES:
        if (PROJECT / name).exists():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PROJECT / name, copy / name)
    return copy


def test_the_key_ignores_where_a_warehouse_lives_and_nothing_else(tmp_path, project_copy):
    options = ["--vars", '{"min_events": 8}']
    base = cache_key(options, project_copy, environment(tmp_path / "a"))
    # Another warehouse folder, target and logs: the same parse.
    assert cache_key(options, project_copy, environment(tmp_path / "b")) == base
    # dbt names the database after the file, so another file name is another parse...
    renamed = environment(tmp_path / "a", SEGMENTS_DUCKDB_PATH=str(tmp_path / "a" / "other.duckdb"))
    assert cache_key(options, project_copy, renamed) != base
    # ...as are other vars, another target or any project setting in the environment.
    assert cache_key(["--vars", '{"min_events": 9}'], project_copy, environment(tmp_path / "a")) != base
    assert cache_key(options, project_copy, environment(tmp_path / "a", SEGMENTS_TARGET="postgres")) != base
    assert cache_key(options, project_copy, environment(tmp_path / "a", SEGMENTS_RAW_SCHEMA="landing")) != base
    # Variables that are not the project's do not matter, nor those read only when a node runs.
    assert cache_key(options, project_copy, environment(tmp_path / "a", PYTEST_CURRENT_TEST="x")) == base
    assert cache_key(options, project_copy, environment(tmp_path / "a", SEGMENTS_DATA_TESTS="new")) == base
    # Any change to a file dbt reads is another parse: a model, a seed, a test, the project file.
    for name in ("models/features/user_features.sql", "seeds/segment_features.csv", "dbt_project.yml"):
        path = project_copy / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert cache_key(options, project_copy, environment(tmp_path / "a")) != base, name
        path.write_bytes(original)
    (project_copy / "models" / "features" / "new_model.sql").write_text("select 1 as one\n")
    assert cache_key(options, project_copy, environment(tmp_path / "a")) != base


def test_a_run_from_the_shared_parse_equals_a_run_after_dbt_parse(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    command = ["ls", "--select", "+user_features", "--output", "json", "--quiet"]
    outcomes = {}
    for name in ("first", "second"):
        dbt_invocation._MANIFESTS.clear()  # as a new process: only the shared cache is left
        env = environment(tmp_path / name, SEGMENTS_DBT_PARSE_CACHE=str(cache))
        outcome = dbt_invocation.invoke(command, PROJECT, env)
        assert outcome.exit_code == 0
        outcomes[name] = sorted(json.loads(line)["unique_id"] for line in outcome.result)
        # Both leave the parse's artifacts in their target folder.
        manifest = json.loads((tmp_path / name / "target" / "manifest.json").read_text())
        assert "model.shopper_segments.user_features" in manifest["nodes"]
        assert (tmp_path / name / "target" / "semantic_manifest.json").exists()
    assert len(list(cache.glob("*.pickle"))) == 1  # the second run took the first one's parse
    # Only the first parsed: dbt's partial-parse file is written by a parse and nowhere else.
    assert (tmp_path / "first" / "target" / "partial_parse.msgpack").exists()
    assert not (tmp_path / "second" / "target" / "partial_parse.msgpack").exists()
    assert outcomes["first"] == outcomes["second"] and "model.shopper_segments.user_features" in outcomes["first"]


def test_a_typed_dbt_command_shares_the_parse_only_when_asked_and_never_for_parse(monkeypatch, tmp_path):
    monkeypatch.delenv(dbt_invocation.PARSE_CACHE_VARIABLE, raising=False)
    assert not dbt_invocation.typed_command_shares_parse(["build"])  # dbt's own partial parsing
    monkeypatch.setenv(dbt_invocation.PARSE_CACHE_VARIABLE, str(tmp_path))
    assert dbt_invocation.typed_command_shares_parse(["build", "--select", "user_features"])
    assert not dbt_invocation.typed_command_shares_parse(["parse"])
