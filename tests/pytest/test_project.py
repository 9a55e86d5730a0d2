"""Project hygiene: SQL lint, Dockerfile lint, one source for each default."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from shopper_segments import settings
from conftest import PROJECT


def test_sql_is_lint_clean(real_warehouse):
    """sqlfluff (config in .sqlfluff) over every model and dbt test, rendered by dbt against DuckDB."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("sqlfluff")), "lint", "models", "tests/dbt", "--nocolor"],
        cwd=PROJECT,
        env=real_warehouse.env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Project Compiled" in result.stdout + result.stderr


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([hadolint, "Dockerfile"], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_profile_and_cli_agree_on_the_default_warehouse_file():
    profile = (PROJECT / "profiles" / "profiles.yml").read_text()
    default = re.search(r"env_var\('SEGMENTS_DUCKDB_PATH', '([^']+)'\)", profile).group(1)
    assert default == settings.DEFAULT_DUCKDB_PATH
    # The privacy file beside the warehouse: the profile derives it as settings.privacy_duckdb_path() does.
    assert f"| replace('.duckdb', '', 1)) ~ '{settings.PRIVACY_FILE_SUFFIX}'" in profile
    raw = (PROJECT / "models" / "staging" / "_staging.yml").read_text()
    assert f"env_var('SEGMENTS_RAW_SCHEMA', '{settings.DEFAULT_RAW_SCHEMA}')" in raw
