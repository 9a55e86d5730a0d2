"""Land raw REES46 event files in the warehouse, one file at a time, exactly once.

This is the project's `COPY`: every line of every file goes into `raw.event_lines` (load id,
line number, and the line split once into its nine fields, or its text when it does not split
plainly: `files.landed_columns_sql`), and every file gets a row in `raw.event_files` (name,
content hash, size, header, status). Checking and cleaning are dbt's job (`models/staging`); the
loader only refuses files that are broken as a whole (empty, not gzip, truncated, not UTF-8,
another dataset's header, no line with the nine fields). Row-level problems never stop a load:
they become rejected rows in dbt.

Rules, each one documented in docs/data_quality.md:
- A file is identified by its name (its path relative to the folder being loaded).
- A name already loaded with the same content is skipped: loading is idempotent.
- The same content under a new name is recorded (status `duplicate_content`) but its
  lines are not stored again, so nothing is counted twice.
- A broken file, or a name already loaded with *different* content (landed files are immutable;
  corrections arrive as new files), is quarantined: recorded with its reason (status
  `quarantined`), none of its lines stored, and the other files are landed. The next run retries
  it if its content changed, and reports it as still quarantined if not.
- Each file is loaded in one transaction: a failure or a killed run leaves no half file.
- Names are literal: a file or folder that exists is taken as named (`ev[1].csv` is that file);
  only a location that does not exist is read as a glob pattern.

Backends (`warehouses.RawWarehouse`): the project's DuckDB file (`DuckDBWarehouse`), PostgreSQL
(`PostgresWarehouse`) and Redshift (`redshift_landing.RedshiftWarehouse`). All read and check a file
the same way, with DuckDB (`files.read_event_file`); PostgreSQL then receives the checked lines by
`COPY ... FROM STDIN`, Redshift by `COPY` from S3 of a numbered copy (docs/deployment.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .files import EventFile, EventFileError, NoEventFilesError, file_sha256
from .warehouses import DuckDBWarehouse, PostgresWarehouse, RawWarehouse


@dataclass
class LoadResult:
    loaded: list[tuple[str, int]] = field(default_factory=list)  # (file name, lines stored)
    skipped: list[str] = field(default_factory=list)  # already loaded, same content
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file name, same content as)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason), new or still
    not_event_files: list[tuple[str, str]] = field(default_factory=list)  # (entry, why it was not read)

    def summary(self) -> str:
        lines = sum(count for _, count in self.loaded)
        return (
            f"loaded {len(self.loaded)} file(s) ({lines:,} lines), "
            f"{len(self.skipped)} already loaded, {len(self.duplicates)} duplicate content, "
            f"{len(self.quarantined)} quarantined, {len(self.not_event_files)} not event files"
        )


def open_raw_warehouse(target: str, duckdb_path: Path, schema: str) -> RawWarehouse:
    """The landing tables of `target`: the DuckDB file, PostgreSQL, or Redshift (COPY from S3)."""
    if target == "duckdb":
        return DuckDBWarehouse(duckdb_path, schema)
    if target == "postgres":
        return PostgresWarehouse(target, schema)
    if target == "redshift":
        from .redshift_landing import RedshiftWarehouse  # lazily: only Redshift needs its S3 code

        return RedshiftWarehouse.from_environment(target, schema)
    raise SystemExit(f"`segments load` lands files in duckdb, postgres or redshift, not {target!r}.")


def load_event_files(warehouse: RawWarehouse, location: str | os.PathLike[str], log=print) -> LoadResult:
    """Land every new file at `location`. A broken file is quarantined and the others are landed.

    Per name, the newest record decides: a file already landed with the same content is skipped; a
    file quarantined with the same content is still quarantined (reported again, not recorded
    again); a changed file is tried again. A name landed with other content is quarantined.
    """
    result = LoadResult()
    discovery = warehouse.discover(location)
    for name, reason in discovery.skipped:
        result.not_event_files.append((name, reason))
        log(f"  {name}: not read: {reason}")
    if not discovery.files:
        raise NoEventFilesError(f"No .csv or .csv.gz event file in {location}: put the files there or point "
                                "--events (or SEGMENTS_EVENTS) at them.")
    for file in discovery.files:
        with discovery.fetch(file):
            _land_one(warehouse, file, result, log)
    if result.loaded:
        warehouse.refresh_statistics()
    return result


def _land_one(warehouse: RawWarehouse, file: EventFile, result: LoadResult, log) -> None:
    """The rules above for one file, readable at `file.path`; the outcome goes into `result`."""
    known = warehouse.known_files()
    landed = {name: (load_id, sha) for load_id, name, sha, status, _ in known if status != "quarantined"}
    quarantined = {name: (load_id, sha, reason) for load_id, name, sha, status, reason in known
                   if status == "quarantined"}
    first_load_of = {}
    for load_id, name, sha, status, _ in known:
        if status == "loaded":
            first_load_of.setdefault(sha, (load_id, name))
    size = file.path.stat().st_size
    sha = file_sha256(file.path)
    if file.name in landed and landed[file.name][1] == sha:
        result.skipped.append(file.name)
        return
    previous = quarantined.get(file.name)
    if previous and previous[1] == sha and previous[0] > landed.get(file.name, (0,))[0]:
        reason = f"still quarantined, content unchanged since load {previous[0]}: {previous[2]}"
        result.quarantined.append((file.name, reason))
        log(f"  {file.name}: {reason}")
        return
    if file.name in landed:
        reason = (f"already loaded (load {landed[file.name][0]}) with different content. Landed files are "
                  "immutable: deliver corrections under a new file name (rows already loaded are "
                  "de-duplicated), or put the original content back.")
        _quarantine(warehouse, file, sha, size, reason, result, log)
        return
    if sha in first_load_of:
        original_load_id, original = first_load_of[sha]
        warehouse.record_duplicate(file, sha, size, original_load_id)
        result.duplicates.append((file.name, original))
        log(f"  {file.name}: same content as {original}, not stored again")
        return
    try:
        lines = warehouse.load_file(file, sha, size)
    except EventFileError as error:
        _quarantine(warehouse, file, sha, size, error.problem, result, log)
        return
    result.loaded.append((file.name, lines))
    log(f"  {file.name}: {lines:,} lines")


def _quarantine(warehouse: RawWarehouse, file: EventFile, sha: str, size: int, reason: str, result: LoadResult,
                log) -> None:
    load_id = warehouse.record_quarantine(file, sha, size, reason)
    result.quarantined.append((file.name, reason))
    log(f"  {file.name}: quarantined (load {load_id}): {reason}")
