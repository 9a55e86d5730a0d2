"""GDPR operations of the `segments` command: erasure requests and the pseudonymisation key.

Both write to the privacy schema (docs/gdpr.md) through a plain database connection, never
through dbt: a user id to erase or a secret key must not end up in dbt's logs or compiled SQL.
The tables themselves are created by the dbt macro `create_privacy_tables` (one DDL for every
warehouse), which `segments` runs first with `dbt run-operation ensure_privacy_tables`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
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
            "SEGMENTS_PSEUDONYMISATION_KEY differs from the key the warehouse was built with. Rotating the "
            "key changes every pseudonym: run `segments run --rotate-key --full-refresh` to rebuild with it."
        )
    execute(f"delete from {schema}.pseudonymisation_key", [])
    execute(f"insert into {schema}.pseudonymisation_key values (?, ?, ?)", [key, fingerprint, _now()])
    return True


def record_erasure(execute: Callable[[str, list[Any]], list[tuple]], schema: str, request_id: str,
                   user_id: int) -> bool:
    """Add an erasure request (idempotent per request id); True when it is new."""
    known = execute(f"select count(*) from {schema}.erasure_requests where request_id = ?", [request_id])
    if known[0][0]:
        return False
    execute(f"insert into {schema}.erasure_requests values (?, ?, ?)", [request_id, int(user_id), _now()])
    return True


class PrivacyStore:
    """The privacy schema of the current target, through a plain connection (not dbt)."""

    def __init__(self, target: str, duckdb_path, schema: str):
        self.schema = schema
        self.target = target
        if target == "duckdb":
            import duckdb

            self.con = duckdb.connect(str(duckdb_path))
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
