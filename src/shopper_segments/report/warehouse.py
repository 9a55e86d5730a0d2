"""Read-only access to the warehouse the report reads, and the signal that a part of it is missing."""

from __future__ import annotations

import pandas as pd

from .. import settings


class Unavailable(Exception):
    """The tables a part of the report needs are missing or empty: it says so instead."""


# --------------------------------------------------------------------------------------------------
# Reading the warehouse
# --------------------------------------------------------------------------------------------------


class Warehouse:
    """Read-only access to the tables of the target: DuckDB file, or PostgreSQL through the dbt profile."""

    def __init__(self, target: str):
        self.target = target
        if target == "duckdb":
            import duckdb

            path = settings.duckdb_path()
            if not path.exists():
                raise SystemExit(f"No warehouse at {path}: run `segments run` (or `make demo`) first.")
            self._con = duckdb.connect(str(path), read_only=True)
            self.location = str(path)
            schema = "main"
            names = self._con.sql(
                "select table_name from information_schema.tables where table_schema = ?", params=[schema]
            ).fetchall()
        elif target == "postgres":
            from ..ingest import connections

            self._con = connections.connect(target)
            self._con.autocommit = True
            schema = connections.target_schema(target)
            self.location = f"PostgreSQL schema {schema}"
            with self._con.cursor() as cur:
                cur.execute(f"set search_path to {connections.quote(schema)}")
                cur.execute("select table_name from information_schema.tables where table_schema = %s", (schema,))
                names = cur.fetchall()
        else:
            raise SystemExit(f"`segments report` reads DuckDB or PostgreSQL, not {target!r}.")
        self.tables = {name for (name,) in names}

    def frame(self, sql: str) -> pd.DataFrame:
        if self.target == "duckdb":
            return self._con.sql(sql).df()
        from ..ingest.connections import read_frame

        return read_frame(self._con, sql)

    def need(self, *tables: str) -> None:
        missing = [t for t in tables if t not in self.tables]
        if missing:
            raise Unavailable(f"table {', '.join(missing)} not in the warehouse")

    def rows(self, sql: str, *tables: str, what: str = "rows") -> pd.DataFrame:
        """`sql` over `tables`; Unavailable when a table is missing or the result is empty."""
        self.need(*tables)
        frame = self.frame(sql)
        if frame.empty:
            raise Unavailable(f"no {what} yet")
        return frame

    def close(self) -> None:
        self._con.close()


def latest(table_name: str) -> str:
    """SQL for the newest model version in `table_name`."""
    return f"(select max(v.model_version) from {table_name} as v)"
