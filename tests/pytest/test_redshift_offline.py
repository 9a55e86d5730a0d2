"""The Redshift target, checked offline (Redshift cannot be reached from here).

What can be checked without a cluster (docs/deployment.md): `dbt parse` and `dbt ls` against the
redshift target; `dbt compile --no-populate-cache` of what compiles without querying the warehouse;
sqlfluff with the Redshift dialect over that compiled SQL; and a scan that fails on DuckDB-only
syntax in the models and macros. The same SQL runs for real on PostgreSQL (test_postgres.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sql_portability
from conftest import PROJECT

# Placeholders only: nothing connects. No secret here or anywhere in the repository.
REDSHIFT_ENV = {
    "SEGMENTS_TARGET": "redshift",
    "SEGMENTS_REDSHIFT_HOST": "offline-check.redshift.invalid",
    "SEGMENTS_REDSHIFT_USER": "dbt_ci",
    "SEGMENTS_REDSHIFT_PASSWORD": "placeholder-not-a-secret",
    "SEGMENTS_BI_GRANTEES": "group bi_readers",
}
LARGE_TABLES = ["stg_events", "int_sessions", "int_user_features", "user_segments"]
# Project hooks are rendered when they run and may query the warehouse: not compilable offline.
NOT_OFFLINE = ["resource_type:unit_test", "resource_type:operation"]
# Compile-only helpers added to a scratch copy of the project (never to the project itself):
# `is_incremental()` answers from a var, so the incremental models compile in both forms without
# asking the warehouse whether their table exists; an analysis renders the SQL scoring for a model
# shape (user_segments reads the shape from the fitted table at compile time).
OFFLINE_MACROS = """
{% macro is_incremental() %}{{ return(var('offline_incremental', false)) }}{% endmacro %}
"""
OFFLINE_SHAPE = ("{'version': 3, 'features': ['sessions', 'active_days', 'view_to_cart_rate'], 'components': [1, 2], "
                 "'segments': [1, 2, 3], 'min_events': 8}")
OFFLINE_EDGES = "{'sessions': [1.0, 2.0], 'active_days': [1.0], 'view_to_cart_rate': [0.05, 0.125]}"
OFFLINE_SCORING = "{{ segment_scores(" + OFFLINE_SHAPE + ", ref('user_features')) }}"
# The snapshot reads the rows written after the latest scored_at it holds (looked up at compile time too).
OFFLINE_CUTOFF = "'(select max(captured.scored_at) from ' ~ this ~ ' as captured)'"
# sqlfluff on compiled SQL: parsing as Redshift SQL, plus rules about meaning rather than layout.
SQLFLUFF_RULES = "ambiguous.distinct,ambiguous.union,ambiguous.join,ambiguous.column_references"


def run_dbt(project: Path, target_dir: Path, *args: str, env: dict[str, str] | None = None):
    environment = {
        **os.environ,
        **REDSHIFT_ENV,
        "DBT_PROFILES_DIR": str(PROJECT / "profiles"),
        "DBT_TARGET_PATH": str(target_dir),
        "DBT_LOG_PATH": str(target_dir / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **(env or {}),
    }
    dbt = str(Path(sys.executable).with_name("dbt"))
    result = subprocess.run([dbt, *args, "--target", "redshift"], cwd=project, env=environment,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    target = tmp_path_factory.mktemp("redshift_parse")
    run_dbt(PROJECT, target, "parse")
    return json.loads((target / "manifest.json").read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, str]:
    """Compiled SQL (path -> text) of every model, test and the scoring, as dbt-redshift renders it."""
    root = tmp_path_factory.mktemp("redshift_compile")
    out: dict[str, str] = {}

    def collect(target: Path, prefix: str):
        for path in sorted((target / "compiled").rglob("*.sql")):
            out[prefix + str(path.relative_to(target / "compiled" / "shopper_segments"))] = path.read_text()

    # 1. The project itself: everything that compiles without the warehouse (not the incremental models, nor
    #    the snapshot: they look up their own table).
    run_dbt(PROJECT, root / "project", "compile", "--no-populate-cache",
            "--exclude", "config.materialized:incremental", "user_segment_history", *NOT_OFFLINE)
    collect(root / "project", "")

    # 2. A scratch copy with the compile-only helpers: incremental models, full-refresh and incremental forms,
    #    and the snapshot as it reads an existing history (compiled for Redshift; dbt writes no file of it).
    copy = root / "copy"
    for name in ("dbt_project.yml", "models", "python_models", "macros", "seeds", "snapshots", "tests/dbt"):
        source, destination = PROJECT / name, copy / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, destination)
    (copy / "macros" / "_offline_compile.sql").write_text(OFFLINE_MACROS)
    # segment_drift reads the fitted model's shape and drift bins at compile time too: in the copy, fixed ones.
    scoring = copy / "macros" / "scoring" / "segment_scoring.sql"
    scoring.write_text(scoring.read_text().replace(
        "{% macro current_segment_model() -%}", "{% macro current_segment_model() -%}{{ return(" + OFFLINE_SHAPE + ") }}", 1
    ).replace("{% macro drift_bin_edges(model) -%}", "{% macro drift_bin_edges(model) -%}{{ return(" + OFFLINE_EDGES + ") }}", 1
    ).replace("{% macro segment_history_cutoff() -%}", "{% macro segment_history_cutoff() -%}{{ return(" + OFFLINE_CUTOFF + ") }}", 1))
    (copy / "analyses").mkdir()
    (copy / "analyses" / "offline_scoring.sql").write_text(OFFLINE_SCORING)
    # user_segments reads the fitted model's shape from the warehouse: its scoring is the analysis.
    run_dbt(copy, root / "full", "compile", "--no-populate-cache",
            "--select", "config.materialized:incremental", "offline_scoring", "user_segment_history",
            "--exclude", "user_segments",
            *NOT_OFFLINE)
    collect(root / "full", "full_refresh/")
    # stg_events / stg_events_rejected look up the audit table when incremental: they run for real on PostgreSQL.
    run_dbt(copy, root / "incremental", "compile", "--no-populate-cache", "--vars", "{offline_incremental: true}",
            "--select", "int_sessions", "int_user_features", "user_features", "stg_event_loads", "--exclude", *NOT_OFFLINE)
    collect(root / "incremental", "incremental/")
    return out


def test_parse_and_ls_against_the_redshift_target(manifest, tmp_path):
    models = {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    # No dbt Python models on Redshift: segment_model is disabled, its table is the source `fitted`.
    assert "segment_model" not in models
    assert any(node["name"] == "segment_model" for nodes in manifest["disabled"].values() for node in nodes)
    fitted = manifest["sources"]["source.shopper_segments.fitted.segment_model"]
    assert fitted["schema"] == "shopper_segments"  # the target schema
    for consumer in ("user_segments", "segment_labels", "segment_model_metrics"):
        assert "source.shopper_segments.fitted.segment_model" in models[consumer]["depends_on"]["nodes"], consumer

    listed = run_dbt(PROJECT, tmp_path, "ls", "--resource-type", "model", "--output", "name", "--quiet").stdout.split()
    assert sorted(listed) == sorted(models)
    assert {"stg_events", "user_features", "user_segments", "segment_profiles"} <= set(listed)


def test_every_table_segments_fit_writes_is_a_fitted_source(manifest):
    from shopper_segments.model.fit import FIT_TABLES

    for name in FIT_TABLES:
        assert f"source.shopper_segments.fitted.{name}" in manifest["sources"], name


def test_redshift_configs_of_the_large_tables_and_the_marts(manifest):
    models = {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    for table in LARGE_TABLES:
        assert models[table]["config"]["dist"] == "user_id", table
        assert models[table]["config"]["sort"], table
    # The marts (models/segments/) are granted to the BI role; staging and features are not.
    marts = {name for name, node in models.items() if node["fqn"][1] == "segments"}
    assert {"user_segments", "segment_profiles", "segment_labels", "segment_model_metrics"} <= marts
    for name, node in models.items():
        expected = {"select": ["group bi_readers"]} if name in marts else {}
        assert node["config"]["grants"] == expected, name


def test_grants_are_off_without_grantees_and_on_duckdb(tmp_path):
    """The grants config must not break DuckDB (no grants there) nor a warehouse without a BI role."""
    for target, grantees in (("duckdb", "group bi_readers"), ("redshift", "")):
        env = {"SEGMENTS_BI_GRANTEES": grantees, "SEGMENTS_DUCKDB_PATH": str(tmp_path / "unused.duckdb")}
        out = tmp_path / target
        environment = {**os.environ, **REDSHIFT_ENV, **env, "DBT_PROFILES_DIR": str(PROJECT / "profiles"),
                       "DBT_TARGET_PATH": str(out), "DBT_LOG_PATH": str(out / "logs")}
        dbt = str(Path(sys.executable).with_name("dbt"))
        result = subprocess.run([dbt, "ls", "--target", target, "--select", "user_segments", "--output", "json",
                                 "--output-keys", "config", "--quiet"], cwd=PROJECT, env=environment,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout.splitlines()[0])["config"]["grants"] == {}, target


def test_compile_covers_the_models_and_renders_redshift_sql(compiled):
    names = {Path(path).name for path in compiled}
    expected = {
        "base_event_lines.sql", "base_pending_event_lines.sql", "stg_events.sql", "stg_events_rejected.sql",
        "stg_event_loads.sql",
        "int_sessions.sql", "int_user_features.sql", "user_features.sql", "segment_labels.sql", "segment_model_metrics.sql",
        "segment_profiles.sql", "offline_scoring.sql", "assert_segment_shares_sum_to_one.sql",
    }
    assert expected <= names
    sql = " ".join("\n".join(compiled.values()).split())
    assert "datediff( second," in sql  # dbt.datediff, Redshift's form
    assert " ~ '^(" in sql  # regex_full_match: POSIX ~, not DuckDB's regexp_full_match
    scoring = next(text for path, text in compiled.items() if path.endswith("offline_scoring.sql"))
    assert '"shopper_segments"."segment_model"' in scoring  # the fitted source in the target schema
    assert " materialized" not in scoring.lower()  # PostgreSQL's CTE keyword does not exist on Redshift
    assert "incremental/" in " ".join(compiled) and "full_refresh/" in " ".join(compiled)


def test_compiled_sql_is_redshift_sql_for_sqlfluff(compiled, tmp_path):
    for path, text in compiled.items():
        (tmp_path / "sql" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sql" / path).write_text(text)
    # Lint every file whatever its size (sqlfluff skips files over 20,000 bytes by default).
    (tmp_path / ".sqlfluff").write_text("[sqlfluff]\nlarge_file_skip_byte_limit = 0\n")
    sqlfluff = str(Path(sys.executable).with_name("sqlfluff"))
    result = subprocess.run(
        [sqlfluff, "lint", "sql", "--dialect", "redshift", "--templater", "raw", "--rules", SQLFLUFF_RULES,
         "--format", "json", "--nocolor"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    report = json.loads(result.stdout)
    assert len(report) == len(compiled)
    problems = [f"{entry['filepath']}:{v['start_line_no']} {v['code']} {v['description']}"
                for entry in report for v in entry["violations"]]
    assert problems == [], "\n".join(problems)
    assert result.returncode == 0, result.stderr


def test_models_and_macros_have_no_duckdb_only_syntax():
    findings = sql_portability.scan_project(PROJECT)
    assert findings == [], "DuckDB-only SQL outside duckdb__ macros:\n" + "\n".join(map(str, findings))


def test_the_duckdb_only_scan_catches_what_it_should():
    """The scan is only worth something if it fails on DuckDB-only code, and only there."""
    text = """
    select len(a), count(*) filter (where b), cast(c as double), list(d), regexp_full_match(e, 'x')
    -- len(commented) and 'len(quoted)' are not SQL
    {% macro duckdb__first_field(line) %}string_split({{ line }}, ',')[1]{% endmacro %}
    {% if target.type == 'duckdb' %} starts_with(f, 'g') {% else %} arg_max(h, i) {% endif %}
    """
    found = sql_portability.scan_text(text, "example.sql")
    flagged = {finding.why.split(":")[0] for finding in found}
    assert len(found) == 6
    assert {"DuckDB only", "DuckDB lists", "aggregate FILTER is not in Redshift",
            "use type_double() (`double precision`)"} <= flagged
    assert all(finding.line in (2, 5) for finding in found)  # not the comment, the duckdb__ macro or branch
