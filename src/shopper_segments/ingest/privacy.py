"""GDPR operations of the `segments` command: erasure requests, the pseudonymisation key, and the
rewrite of the DuckDB file after an erasure.

Erasure requests and the key are written to the privacy schema (docs/gdpr.md) through a plain
database connection, never through dbt: a user id to erase or a secret key must not end up in dbt's
logs or compiled SQL. The tables themselves are created by the dbt macro `create_privacy_tables` (one
DDL for every warehouse), which `segments` runs first with `dbt run-operation`. On DuckDB the privacy
schema is its own database file, readable by its owner only (`ensure_private_file`).
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable


def pseudonym(key: str, user_id: int | str) -> int:
    """The pseudonymised shopper id, exactly as the SQL macro `shopper_id` computes it:
    the first 15 hexadecimal digits (60 bits) of SHA-256(key || ':' || user id) as an integer."""
    digest = hashlib.sha256(f"{key}:{user_id}".encode()).hexdigest()
    return int(digest[:15], 16)


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


class KeyChangedError(Exception):
    pass


def store_pseudonymisation_key(execute: Callable[[str, list[Any]], list[tuple]], schema: str, key: str,
                               replace: bool = False) -> bool:
    """Store the key in the privacy schema; True when it changed. A different key than the stored
    one changes every pseudonym: refused unless `replace` (then rebuild with --full-refresh)."""
    fingerprint = key_fingerprint(key)
    rows = execute(f"select key_fingerprint from {schema}.pseudonymisation_key", [])
    if rows and rows[0][0] == fingerprint:
        return False
    if rows and not replace:
        raise KeyChangedError(
            "SEGMENTS_PSEUDONYMISATION_KEY differs from the key the warehouse was built with; nothing was "
            "written. To rotate the key (every pseudonym changes, every layer is rebuilt with the new key): "
            "`segments run --rotate-key -- --vars '{pseudonymise_user_ids: true}'` (docs/gdpr.md)."
        )
    execute(f"delete from {schema}.pseudonymisation_key", [])
    execute(f"insert into {schema}.pseudonymisation_key values (?, ?, ?)", [key, fingerprint, _now()])
    return True


class RequestIdReusedError(Exception):
    pass


def record_erasure(execute: Callable[[str, list[Any]], list[tuple]], schema: str, request_id: str,
                   user_id: int) -> bool:
    """Add an erasure request; True when it is new. A request id names one shopper: the same request
    again is a no-op, the same request id for another shopper is refused."""
    known = execute(f"select user_id from {schema}.erasure_requests where request_id = ?", [request_id])
    if known and int(known[0][0]) != int(user_id):
        raise RequestIdReusedError(
            f"request id {request_id} is already recorded for another shopper; nothing was recorded. "
            "Give this request its own id."
        )
    if known:
        return False
    execute(f"insert into {schema}.erasure_requests values (?, ?, ?)", [request_id, int(user_id), _now()])
    return True


def ensure_private_file(path: Path) -> None:
    """Create the privacy schema's DuckDB file readable and writable by its owner only (mode 0600)."""
    if path.exists():
        return
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    previous = os.umask(0o077)
    try:
        duckdb.connect(str(path)).close()
    finally:
        os.umask(previous)
    path.chmod(0o600)


def erasures_to_compact(warehouse: Path, privacy_file: Path, schema: str) -> int | None:
    """The number of applied erasure requests when the warehouse file was not rewritten since the last
    one was applied (None otherwise). `compact_duckdb_file` records that number once it has run."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        logged = con.execute(
            "select count(*) from duckdb_tables() where schema_name = 'main' and table_name = 'erasure_log'"
        ).fetchall()[0][0]
        applied = con.execute("select count(*) from main.erasure_log").fetchall()[0][0] if logged else 0
    with duckdb.connect(str(privacy_file)) as con:
        con.execute(f"create table if not exists {schema}.file_rewrites "
                    "(erasures_applied bigint not null, rewritten_at timestamp not null)")
        done = con.execute(f"select coalesce(max(erasures_applied), 0) from {schema}.file_rewrites").fetchall()[0][0]
    return applied if applied > done else None


def compact_duckdb_file(warehouse: Path, privacy_file: Path, schema: str, erasures_applied: int) -> None:
    """Rewrite the warehouse file so that no byte of deleted rows remains in it.

    DuckDB reuses the blocks of deleted rows but does not wipe them, and CHECKPOINT or VACUUM leave
    them readable. COPY FROM DATABASE writes only the live rows into a new file, which then replaces
    the old one atomically (same folder, os.replace): a crash leaves either file whole.
    """
    import duckdb

    rewritten = warehouse.with_name(warehouse.name + ".rewrite")
    for leftover in (rewritten, rewritten.with_name(rewritten.name + ".wal")):
        leftover.unlink(missing_ok=True)
    with duckdb.connect(str(warehouse)) as con:
        source = con.execute("select current_database()").fetchall()[0][0]
        # Views may name the privacy schema's database: it is attached as during a build.
        con.execute(f"attach '{privacy_file}' as privacy_store (read_only)")
        con.execute(f"attach '{rewritten}' as rewritten")
        con.execute(f'copy from database "{source}" to rewritten')
        con.execute("detach rewritten")
    rewritten.chmod(warehouse.stat().st_mode & 0o777)
    os.replace(rewritten, warehouse)
    warehouse.with_name(warehouse.name + ".wal").unlink(missing_ok=True)
    with duckdb.connect(str(privacy_file)) as con:
        con.execute(f"insert into {schema}.file_rewrites values (?, ?)", [erasures_applied, _now()])


class PrivacyStore:
    """The privacy schema of the current target, through a plain connection (not dbt)."""

    def __init__(self, target: str, privacy_duckdb_path, schema: str):
        self.schema = schema
        self.target = target
        if target == "duckdb":
            import duckdb

            self.con = duckdb.connect(str(privacy_duckdb_path))
        else:
            from .connections import connect

            self.con = connect(target)

    def execute(self, sql: str, params: list[Any]) -> list[tuple]:
        if self.target == "duckdb":
            return self.con.execute(sql, params).fetchall()
        with self.con.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def commit(self) -> None:
        if self.target != "duckdb":
            self.con.commit()

    def close(self) -> None:
        self.con.close()
