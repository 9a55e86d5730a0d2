"""The container, for real: build the image with podman on a locally made base, run the pipeline in it.

The image is built from the project's Dockerfile (BASE_IMAGE = a debootstrap'ed bookworm, made once
per machine) and runs the main job on the bundled real sample: on DuckDB (a mounted warehouse
file, no network) and on PostgreSQL (the test server, so load + fit + dbt build run in the image).
It must run as an unprivileged user.
"""

from __future__ import annotations

import os
import time

import duckdb
import pytest
import yaml

import container_support
import pg_support
from conftest import PROJECT

IMAGE_TAG = "localhost/shopper-segments:smoke-test"
SAMPLE_IN_IMAGE = "/app/data/sample/2019-Oct-head.csv"
PIPELINE_UID = 10001
MIN_EVENTS = yaml.safe_load((PROJECT / "dbt_project.yml").read_text())["vars"]["min_events"]


@pytest.fixture(scope="module")
def image(tmp_path_factory, pytestconfig) -> str:
    container_support.require_tools()
    base, base_seconds = container_support.ensure_base_image()
    started = time.perf_counter()
    image_id = container_support.build_image(PROJECT, base, IMAGE_TAG, tmp_path_factory.mktemp("image") / "iid")
    built = time.perf_counter() - started
    container_support.report(
        pytestconfig, f"\ncontainer: base image {base_seconds:.0f} s (0 = cached here), podman build {built:.0f} s"
    )
    return image_id


def test_the_image_runs_as_an_unprivileged_user(image):
    configured = container_support.podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert configured == f"{PIPELINE_UID}:{PIPELINE_UID}"
    identity = container_support.run(image, "-u", options=["--network", "none", "--entrypoint", "id"])
    assert identity.stdout.strip() == str(PIPELINE_UID)


def test_the_pipeline_runs_in_the_container_on_duckdb(image, tmp_path, pytestconfig):
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    os.chmod(warehouse, 0o777)  # the pipeline user (not root) writes here
    started = time.perf_counter()
    result = container_support.run(
        image,  # the default command: `segments run`
        options=["--network", "none", "-v", f"{warehouse}:/data/warehouse", "-e", f"SEGMENTS_EVENTS={SAMPLE_IN_IMAGE}"],
    )
    container_support.report(pytestconfig, f"\ncontainer: run on DuckDB {time.perf_counter() - started:.0f} s")
    assert "Main job finished" in result.stdout and "exit code 0" in result.stdout, result.stdout[-3000:]

    database = warehouse / "shopper_segments.duckdb"
    assert database.stat().st_uid == PIPELINE_UID  # written by the unprivileged user
    with duckdb.connect(str(database), read_only=True) as con:
        scored = con.sql("select count(*) from user_segments where segment_status = 'scored'").fetchall()[0][0]
        shoppers = con.sql("select count(*) from user_segments").fetchall()[0][0]
        eligible = con.sql(f"select count(*) from user_features where events >= {MIN_EVENTS}").fetchall()[0][0]
        audited = con.sql("select file_name, rows_rejected from stg_event_loads").fetchall()
    assert shoppers == 4504 and scored == eligible > 500
    assert audited == [("2019-Oct-head.csv", 1)]


def test_the_pipeline_runs_in_the_container_on_postgres(image, pytestconfig):
    """SEGMENTS_TARGET=postgres: the image lands the files, fits with `segments fit` and builds in SQL."""
    server = pg_support.shared_server(pytestconfig)
    env = {"SEGMENTS_TARGET": "postgres", **server.create_database("container")}
    options = ["--network", "host"]  # the test server listens on the host's loopback only
    for name, value in env.items():
        options += ["-e", f"{name}={value}"]
    started = time.perf_counter()
    result = container_support.run(image, "run", "--events", SAMPLE_IN_IMAGE, options=options)
    container_support.report(pytestconfig, f"\ncontainer: run on PostgreSQL {time.perf_counter() - started:.0f} s")
    assert "$ segments fit" in result.stdout and "exit code 0" in result.stdout, result.stdout[-3000:]
    assert server.query("container", "select count(*) from analytics.user_segments")[0][0] == 4504
    segments = server.query("container", "select count(distinct segment_id) from analytics.user_segments")[0][0]
    assert segments > 1
    assert server.query("container", "select count(*) from analytics.segment_profiles")[0][0] == segments
