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

A parse can also be shared between processes: when SEGMENTS_DBT_PARSE_CACHE names a folder, a parsed
manifest is stored there (pickled) and any later process that would parse the same project the same
way takes it instead (then dbt's manifest.json and semantic_manifest.json are written to the target
folder, as a parse writes them). The test suite sets it: dbt's own partial parsing cannot help there,
because it starts over whenever the profile changes, and every test warehouse is another DuckDB file.
"The same way" is deliberately strict (cache_key): the project's files (content), the dbt packages'
versions, the parse options, and every SEGMENTS_* / DBT_* environment variable except where the
warehouse file, the logs and the target folder live and those only read when a node runs
(RUNTIME_ONLY_VARIABLES); of the DuckDB file only its name is kept, since dbt names the database after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from contextlib import contextmanager
from importlib import metadata
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

PARSE_CACHE_VARIABLE = "SEGMENTS_DBT_PARSE_CACHE"
# What dbt reads to parse the project (dbt_project.yml's paths) and the files that configure it.
PARSED_FOLDERS = ("models", "python_models", "macros", "seeds", "snapshots", "analyses", "tests/dbt")
PARSED_FILES = ("dbt_project.yml", "profiles/profiles.yml", "packages.yml", "dependencies.yml")
# Where one warehouse's files live: they differ between warehouses, the parse does not depend on them.
PER_WAREHOUSE_VARIABLES = ("SEGMENTS_DUCKDB_PATH", "SEGMENTS_PRIVACY_DUCKDB_PATH", "DBT_TARGET_PATH",
                           "DBT_LOG_PATH", PARSE_CACHE_VARIABLE)
# Read only when a node runs (macros/tests/test_scope.sql), never by the parse: a manifest serves every value.
RUNTIME_ONLY_VARIABLES = ("SEGMENTS_DATA_TESTS",)
PACKAGES = ("dbt-core", "dbt-adapters", "dbt-duckdb", "dbt-postgres", "dbt-redshift")


def parse_options(args: list[str]) -> list[str]:
    """The PARSE_OPTIONS of `args`, with their values (what the preceding `dbt parse` is given)."""
    kept = []
    for index, arg in enumerate(args):
        if arg.split("=", 1)[0] in PARSE_OPTIONS:
            kept.append(arg)
            if "=" not in arg and index + 1 < len(args):
                kept.append(args[index + 1])
    return kept


def typed_command_shares_parse(args: list[str]) -> bool:
    """`segments dbt -- <args>` parses as dbt does (its own partial parsing), unless a shared parse is
    configured (PARSE_CACHE_VARIABLE) and the command is not `parse` itself."""
    return bool(os.environ.get(PARSE_CACHE_VARIABLE)) and "parse" not in args


def cache_key(options: list[str], project_dir: Path, env: dict[str, str]) -> str:
    """What a parse depends on, hashed (module docstring): equal keys, interchangeable manifests."""
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        for part in parts:
            digest.update(repr(part).encode() + b"\0")

    for package in PACKAGES:
        try:
            add(package, metadata.version(package))
        except metadata.PackageNotFoundError:
            add(package, None)
    add(options)
    ignored = (*PER_WAREHOUSE_VARIABLES, *RUNTIME_ONLY_VARIABLES)
    for name in sorted(env):
        if name.startswith(("SEGMENTS_", "DBT_")) and name not in ignored:
            add(name, env[name])
    add("duckdb file", Path(env.get("SEGMENTS_DUCKDB_PATH", "")).stem)
    files = [project_dir / name for name in PARSED_FILES]
    for folder in PARSED_FOLDERS:
        files.extend(sorted(path for path in (project_dir / folder).rglob("*") if path.is_file()))
    for path in files:
        add(str(path.relative_to(project_dir)), path.read_bytes() if path.is_file() else None)
    return digest.hexdigest()


def _manifest_from_fields(fields: dict[str, Any]) -> Any:
    from dbt.contracts.graph.manifest import Manifest

    return Manifest(**fields)


class _ManifestPickler(pickle.Pickler):
    """Pickles dbt's Manifest by its public fields (by name). Its private caches (lookups, a lock)
    are rebuilt on first use; dbt's own `__reduce_ex__` passes fields by position and misses one."""

    def reducer_override(self, obj: Any) -> Any:
        from dbt.contracts.graph.manifest import Manifest

        if type(obj) is Manifest:
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")}
            return _manifest_from_fields, (fields,)
        return NotImplemented


def _cached_parse(cache: Path, key: str) -> Any:
    try:
        return pickle.loads((cache / f"{key}.pickle").read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None


def _store_parse(cache: Path, key: str, manifest: Any) -> None:
    """Written aside and renamed: a concurrent reader sees the whole file or none."""
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{key}.{os.getpid()}.partial"
    with open(partial, "wb") as handle:
        _ManifestPickler(handle, protocol=pickle.HIGHEST_PROTOCOL).dump(manifest)
    os.replace(partial, cache / f"{key}.pickle")


def _target_path(args: list[str], project_dir: Path, env: dict[str, str]) -> Path:
    for index, arg in enumerate(args):
        if arg.startswith("--target-path="):
            return project_dir / arg.split("=", 1)[1]
        if arg == "--target-path" and index + 1 < len(args):
            return project_dir / args[index + 1]
    return project_dir / env.get("DBT_TARGET_PATH", "target")


def _parse(options: list[str], project_dir: Path, env: dict[str, str]) -> tuple[Any, bool]:
    """The project's manifest, and whether it came from the shared cache (then nothing was written to
    the target folder yet); None when the parse failed (dbt has said why)."""
    from dbt.cli.main import dbtRunner

    cache = Path(env[PARSE_CACHE_VARIABLE]) if env.get(PARSE_CACHE_VARIABLE) else None
    key = cache_key(options, project_dir, env) if cache else ""
    manifest = _cached_parse(cache, key) if cache else None
    if manifest is not None:
        return manifest, True
    parsed = dbtRunner().invoke(["parse", *options])
    if not parsed.success:
        return None, False
    if cache:
        _store_parse(cache, key, parsed.result)
    return parsed.result, False


def _write_parse_artifacts(manifest: Any, args: list[str], project_dir: Path, env: dict[str, str]) -> None:
    """manifest.json and semantic_manifest.json, as `dbt parse` writes them (after an invocation:
    dbt's writer reads the flags the invocation set)."""
    from dbt.parser.manifest import write_manifest

    target = _target_path(args, project_dir, env)
    target.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, str(target))


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
    key = (tuple(options), tuple(sorted(item for item in env.items() if item[0] not in RUNTIME_ONLY_VARIABLES)))
    with _inside(project_dir, env):
        try:
            manifest, from_cache = (_MANIFESTS.get(key) if reuse_parse else None), False
            if reuse_parse and manifest is None:
                manifest, from_cache = _parse(options, project_dir, env)
                if manifest is None:
                    return Invocation(2)
                _MANIFESTS[key] = manifest
            outcome = dbtRunner(manifest=manifest).invoke(args)
            if from_cache:
                _write_parse_artifacts(manifest, args, project_dir, env)
        finally:
            _close_duckdb()
    exit_code = 0 if outcome.success else (2 if outcome.exception is not None else 1)
    return Invocation(exit_code, outcome.result)

