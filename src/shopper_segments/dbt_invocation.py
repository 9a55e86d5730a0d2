"""dbt, invoked in this process through dbt's programmatic API (`dbtRunner`), not as a subprocess.

Why: one `segments run` calls dbt three times (the privacy check, the build, the source freshness).
As subprocesses each paid dbt's import (~4 s) and a parse of the project (~3 s; ~10 s whenever the
vars or the warehouse differ from the previous parse), about 25 s of a run whose SQL takes 5 s on a
day of events. In one process dbt is imported once and the project is parsed once per set of vars:
the parsed manifest is handed to the next invocation (`dbtRunner(manifest=...)`), as dbt documents
for programmatic invocations. Invocations run one after the other, never concurrently (dbt does
not support that).

Each invocation sees what the subprocess saw: the project folder as working directory and the
environment of `settings.dbt_env()` (restored afterwards), and returns dbt's exit code (0 success,
1 a model or test failed, 2 dbt could not run). On DuckDB the database dbt opened is closed after
each invocation, so the loader and the tests can open the file right after.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

# Options that change what dbt parses: a manifest is reused only for the same values of these.
PARSE_OPTIONS = ("--vars", "--target", "-t", "--profile", "--project-dir", "--profiles-dir")


@dataclass
class Invocation:
    """The outcome of one dbt command: its exit code and dbt's own result object."""

    exit_code: int
    result: Any = None


# Parsed manifests of this process, by parse options and environment.
_MANIFESTS: dict[tuple, Any] = {}


def parse_options(args: list[str]) -> list[str]:
    """The PARSE_OPTIONS of `args`, with their values (what the preceding `dbt parse` is given)."""
    kept = []
    for index, arg in enumerate(args):
        if arg.split("=", 1)[0] in PARSE_OPTIONS:
            kept.append(arg)
            if "=" not in arg and index + 1 < len(args):
                kept.append(args[index + 1])
    return kept


@contextmanager
def _inside(project_dir: Path, env: dict[str, str]) -> Iterator[None]:
    """The working directory and environment of the invocation, restored afterwards."""
    previous_dir, previous_env = os.getcwd(), dict(os.environ)
    os.chdir(project_dir)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(previous_env)
        os.chdir(previous_dir)


def _close_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the process (a class-level environment)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter only
        return
    try:
        environment = DuckDBConnectionManager.env()
    except Exception:  # nothing was opened
        return
    DuckDBConnectionManager.close_all_connections()
    environment.close()


def invoke(args: list[str], project_dir: Path, env: dict[str, str], reuse_parse: bool = True) -> Invocation:
    """Run `dbt <args>` in this process; with `reuse_parse`, parse once per PARSE_OPTIONS + environment."""
    from dbt.cli.main import dbtRunner

    options = parse_options(args)
    key = (tuple(options), tuple(sorted(env.items())))
    with _inside(project_dir, env):
        try:
            manifest = _MANIFESTS.get(key) if reuse_parse else None
            if reuse_parse and manifest is None:
                parsed = dbtRunner().invoke(["parse", *options])
                if not parsed.success:
                    return Invocation(2, parsed.result)
                manifest = _MANIFESTS[key] = parsed.result
            outcome = dbtRunner(manifest=manifest).invoke(args)
        finally:
            _close_duckdb()
    exit_code = 0 if outcome.success else (2 if outcome.exception is not None else 1)
    return Invocation(exit_code, outcome.result)

