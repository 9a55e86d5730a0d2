"""Connections to the SQL warehouses, read from the dbt profile (`profiles/profiles.yml`).

`segments load` and `segments fit` talk to PostgreSQL and Redshift outside dbt. They use the
target dbt uses, rendered by dbt's own profile renderer, so there is one place where host, user,
schema and credentials are configured (environment variables, nothing secret in the repo):
PostgreSQL through psycopg2, Redshift through dbt-redshift's connection factory (password or IAM,
exactly as dbt connects).

Helpers work on any DB-API connection with the `format` paramstyle (psycopg2,
redshift_connector): `read_frame` and `write_frame`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from .. import settings

PROFILE_NAME = "shopper_segments"


def profile_target(target: str) -> dict[str, Any]:
    """The rendered output `target` of the project's dbt profile (env vars resolved)."""
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    set_invocation_context(os.environ)
    profiles_dir = os.environ.get("DBT_PROFILES_DIR") or str(settings.project_dir() / "profiles")
    raw = read_profile(profiles_dir).get(PROFILE_NAME)
    if raw is None:
        raise SystemExit(f"No profile {PROFILE_NAME!r} in {profiles_dir}/profiles.yml")
    _, data = Profile.render_profile(raw, PROFILE_NAME, target, ProfileRenderer({}))
    return data


def connect(target: str):
    """A DB-API connection (autocommit off) to the warehouse of `target` (postgres or redshift)."""
    config = profile_target(target)
    kind = config.get("type")
    if kind == "postgres":
        import psycopg2

        con = psycopg2.connect(
            host=config["host"],
            port=int(config["port"]),
            user=config["user"],
            password=config.get("password") or None,
            dbname=config.get("dbname") or config.get("database"),
            sslmode=config.get("sslmode") or "prefer",
            connect_timeout=int(config.get("connect_timeout") or 30),
            application_name="shopper-segments",
        )
    elif kind == "redshift":
        from dbt.adapters.redshift.connections import RedshiftCredentials, get_connection_method

        fields = {k: v for k, v in config.items() if k not in ("type", "threads") and v not in ("", None)}
        con = get_connection_method(RedshiftCredentials.from_dict(fields))()
    else:
        raise SystemExit(f"Target {target!r} is a {kind} warehouse: this command needs postgres or redshift")
    con.autocommit = False
    return con


def target_schema(target: str) -> str:
    """The schema dbt builds the models of `target` in."""
    return profile_target(target)["schema"]


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# PostgreSQL type OIDs (Redshift reports the same ones) and the pandas dtype DuckDB gives them.
_INTEGER_OIDS = {20, 21, 23}  # int8, int2, int4
_FLOAT_OIDS = {700, 701, 1700}  # float4, float8, numeric
_BOOLEAN_OID = 16
_TIMESTAMP_OID = 1114  # timestamp without time zone


def read_frame(con, sql: str, params: tuple | list | None = None) -> pd.DataFrame:
    """The result of `sql` as a DataFrame typed as DuckDB's `.df()` types it.

    Integers are int64 (Int64 when NULLs occur), numeric and floats float64, booleans bool,
    timestamps datetime64[us]: the fitting code sees the same frame on every warehouse.
    """
    with con.cursor() as cur:
        cur.execute(sql, params)
        description = [(column[0], column[1]) for column in cur.description]
        rows = cur.fetchall()
    frame = pd.DataFrame.from_records(rows, columns=[name for name, _ in description])
    for name, oid in description:
        column = frame[name]
        if oid in _INTEGER_OIDS:
            frame[name] = column.astype("Int64" if column.isna().any() else "int64")
        elif oid in _FLOAT_OIDS:
            frame[name] = pd.to_numeric(column, errors="coerce").astype("float64")
        elif oid == _BOOLEAN_OID and not column.isna().any():
            frame[name] = column.astype(bool)
        elif oid == _TIMESTAMP_OID:
            frame[name] = pd.to_datetime(column).astype("datetime64[us]")
    return frame


def _sql_type(dtype, flavour: str) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double precision"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    # Redshift's `text` is varchar(256): labels and descriptions can be longer.
    return "varchar(65535)" if flavour == "redshift" else "text"


def _python_value(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def create_table_sql(relation: str, frame: pd.DataFrame, flavour: str) -> str:
    columns = ", ".join(f"{quote(name)} {_sql_type(dtype, flavour)}" for name, dtype in frame.dtypes.items())
    return f"create table if not exists {relation} ({columns})"


def insert_rows(cur, relation: str, frame: pd.DataFrame, batch_rows: int = 500) -> None:
    """Multi-row INSERTs (a few hundred rows each): fast enough for model-sized tables everywhere."""
    if frame.empty:
        return
    columns = ", ".join(quote(name) for name in frame.columns)
    row_placeholder = "(" + ", ".join(["%s"] * len(frame.columns)) + ")"
    records = [tuple(_python_value(v) for v in row) for row in frame.itertuples(index=False, name=None)]
    for start in range(0, len(records), batch_rows):
        batch = records[start:start + batch_rows]
        sql = f"insert into {relation} ({columns}) values " + ", ".join([row_placeholder] * len(batch))
        cur.execute(sql, [value for record in batch for value in record])


def write_frame(con, schema: str, table: str, frame: pd.DataFrame, mode: str, flavour: str) -> None:
    """Write `frame` to schema.table in one transaction: `append` rows, or `replace` all rows.

    The table is created from the frame's dtypes when missing. `replace` deletes and inserts rather
    than dropping the table, so views built on it (and grants) stay in place.
    """
    if mode not in ("append", "replace"):
        raise ValueError(f"unknown write mode {mode!r}")
    relation = f"{quote(schema)}.{quote(table)}"
    try:
        with con.cursor() as cur:
            cur.execute("select count(*) from information_schema.schemata where schema_name = %s", (schema,))
            if cur.fetchall()[0][0] == 0:  # dbt made it already, normally; creating needs more privileges
                cur.execute(f"create schema {quote(schema)}")
            cur.execute(create_table_sql(relation, frame, flavour))
            if mode == "replace":
                cur.execute(f"delete from {relation}")
            insert_rows(cur, relation, frame)
        con.commit()
    except BaseException:
        con.rollback()
        raise


def relation_exists(con, schema: str, table: str) -> bool:
    with con.cursor() as cur:
        cur.execute(
            "select count(*) from information_schema.tables where table_schema = %s and table_name = %s",
            (schema, table),
        )
        return cur.fetchall()[0][0] > 0
