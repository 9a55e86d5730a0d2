"""Operational failures end with one sentence naming the cause and what to do, a non-zero exit and no
Python traceback (issue 13, item 9). Each condition is real: a held DuckDB lock, a folder the user
cannot write, a file-size limit (RLIMIT_FSIZE, what a full disk looks like to the writer), a missing file."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import OCTOBER_HEAD, PROJECT, Warehouse
from pg_support import missing


def assert_one_sentence(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]


@pytest.fixture()
def landed(tmp_path) -> Warehouse:
    warehouse = Warehouse(tmp_path)
    warehouse.segments("load", "--events", str(OCTOBER_HEAD))
    return warehouse


@pytest.mark.parametrize("command", [
    ("load", "--events", str(OCTOBER_HEAD)),
    ("query", "select count(*) from raw.event_files"),
    ("erase", "--request-id", "REQ-1", "--user-id", "541312140"),
])
def test_a_warehouse_held_by_another_run_is_named_as_such(landed, command):
    holder = duckdb.connect(str(landed.path))  # another process holding the lock, as a running `segments run` does
    try:
        result = landed.segments(*command, check=False)
    finally:
        holder.close()
    assert_one_sentence(result, f"The warehouse {landed.path} is in use by another process",
                        "wait for it to finish, then run the command again")


def test_query_on_a_missing_warehouse_says_so(tmp_path):
    result = Warehouse(tmp_path).segments("query", "select 1", check=False)
    assert_one_sentence(result, f"There is no warehouse at {tmp_path / 'warehouse.duckdb'}", "run `segments run` first")
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_a_read_only_warehouse_folder_is_named(tmp_path):
    """Root ignores permission bits: as root the folder is made immutable (chattr +i) instead."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            missing("chattr +i is not permitted here: cannot make a folder read-only for root")
        undo = ["chattr", "-i", str(folder)]
    else:
        os.chmod(folder, 0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        warehouse = Warehouse(folder)
        result = warehouse.segments("load", "--events", str(OCTOBER_HEAD), check=False)
    finally:
        subprocess.run(undo, check=True)
    assert_one_sentence(result, "Permission denied on", "make it writable by this user")
    assert not warehouse.path.exists()


def test_a_full_disk_is_named_and_the_next_run_lands_the_file(tmp_path):
    warehouse = Warehouse(tmp_path)
    warehouse.segments("load", "--events", str(OCTOBER_HEAD.parent / "2019-Nov-head-noheader.csv"))
    size = warehouse.path.stat().st_size

    def small_disk():  # every file this process writes is capped a little above the current warehouse
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 64 * 1024, size + 64 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "shopper_segments.cli", "load", "--events", str(OCTOBER_HEAD)],
        cwd=PROJECT, env=warehouse.env(), capture_output=True, text=True, preexec_fn=small_disk,
    )
    assert_one_sentence(result, "The disk is full", "free some space")
    assert warehouse.scalar("select count(*) from raw.event_files where file_name = '2019-Oct-head.csv'") == 0

    again = warehouse.segments("load", "--events", str(OCTOBER_HEAD))  # space is back: the file lands whole
    assert "loaded 1 file(s) (17,435 lines)" in again.stdout


def test_a_disk_filling_during_the_build_is_named_and_the_next_run_resumes(tmp_path):
    """issue 15, point 4: the disk fills while dbt builds (every file the run writes capped a little above
    the landed warehouse): one sentence naming the model and what to do, then a run with space builds all."""
    warehouse = Warehouse(tmp_path)
    warehouse.segments("load", "--events", str(OCTOBER_HEAD))
    size = warehouse.path.stat().st_size

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 256 * 1024, size + 256 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "shopper_segments.cli", "run", "--events", str(OCTOBER_HEAD)],
        cwd=PROJECT, env=warehouse.env(), capture_output=True, text=True, preexec_fn=small_disk,
    )
    assert_one_sentence(result, "The disk is full", "while dbt built ", "run again")

    warehouse.segments("run", "--events", str(OCTOBER_HEAD))
    audit = warehouse.df("select rows_read, rows_accepted, rows_rejected, rows_duplicate from stg_event_loads")
    assert len(audit) == 1 and audit.rows_read[0] == 17_435
    assert (audit.rows_accepted + audit.rows_rejected + audit.rows_duplicate)[0] == 17_435
    assert warehouse.scalar("select count(*) from user_segments") > 0
