"""Failures the user can act on: one sentence naming the cause and what to do, instead of a traceback.

`segments` (cli.main) catches what a command raises and prints `explain_operational_error`'s sentence
when there is one; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Any

from . import settings


# How a full disk (or a file-size limit) reads in an error's text, from Python, DuckDB or dbt.
DISK_FULL_MARKERS = ("No space left on device", "File too large")


class OperationalError(Exception):
    """An expected failure of the machine or of the setup: its message is the one sentence the user sees."""


def check_warehouse_is_free() -> None:
    """Open the DuckDB warehouse for writing once (DuckDB's lock says whether another process holds it)."""
    import duckdb

    path = settings.duckdb_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(path)).close()


def explain_operational_error(error: BaseException) -> str | None:
    """One sentence naming the cause and what to do, for a failure the user can act on; None for a bug."""
    import errno

    import duckdb

    text = str(error)
    where = settings.duckdb_path()
    if isinstance(error, OperationalError):
        return text
    from .ingest.files import NoEventFilesError

    if isinstance(error, NoEventFilesError):
        return text
    pid = re.search(r"\(PID (\d+)\)", text)
    if "Could not set lock" in text:
        holder = f" (process {pid.group(1)})" if pid else ""
        return (f"The warehouse {where} is in use by another process{holder}, such as another `segments run`: "
                "wait for it to finish, then run the command again.")
    full = (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG)) or any(
        marker in text for marker in DISK_FULL_MARKERS)
    if full:
        return (f"The disk is full (or a file-size limit was reached) while writing to {where.parent} or the "
                "temporary folder: free some space (or move SEGMENTS_DUCKDB_PATH), then run again; the "
                "interrupted step was rolled back.")
    denied = (isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)) or any(
        marker in text for marker in ("Permission denied", "Read-only file system", "Operation not permitted"))
    if denied:
        name = getattr(error, "filename", None) or where
        return (f"Permission denied on {name} (a read-only folder, or one this user may not write): make it "
                "writable by this user, or set SEGMENTS_DUCKDB_PATH to a writable place.")
    if isinstance(error, (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException)):
        return f"The query failed: {text.splitlines()[0]}. Check the SQL (table names: README, 'What you get')."
    return None


def explain_dbt_failure(result: Any) -> str | None:
    """One sentence for a dbt command that a full disk stopped, naming the model; None when no node failed
    that way (dbt's own output says the rest)."""
    for node in getattr(result, "results", None) or []:
        message = str(getattr(node, "message", "") or "")
        name = getattr(getattr(node, "node", None), "name", "a model")
        if any(marker in message for marker in DISK_FULL_MARKERS):
            where = settings.duckdb_path()
            return (f"The disk is full (or a file-size limit was reached) while dbt built {name}: DuckDB writes "
                    f"the warehouse and spills to disk in {where.parent} (or the temporary folder). Free some "
                    f"space there (or move SEGMENTS_DUCKDB_PATH), then run again: what was built before is kept, "
                    f"{name} was rolled back, and the next run resumes from it.")
    return None
