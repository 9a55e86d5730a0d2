"""The image's build context is an allow-list (issue 13, item 11): podman itself computes the context
(a `FROM scratch` image that copies it), and it must hold exactly what the image needs, nothing planted."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile

import pytest
import yaml

from conftest import PROJECT
from pg_support import missing

# Files a careless build machine holds, that must never reach an image.
STRAYS = [
    ".env", "redshift.env", "profiles/redshift.env", "notes.csv", "models/stray.csv", "src/leftover.csv.gz",
    "warehouse/shopper_segments.duckdb", "shopper_segments.duckdb", "shopper_segments.duckdb.wal",
    "scratch.db", "shopper_segments.duckdb.tmp/duckdb_temp_block-1.block", "spill.tmp/block",
    "data/events/demo/2019-11-01.csv.gz", "reports/segment_report.html", "target/manifest.json",
    "logs/dbt.log", ".venv/bin/python", ".git/HEAD", "tests/pytest/test_new.py", "docs/notes.md",
    "src/shopper_segments/__pycache__/cli.cpython-311.pyc",
]


def needed_files(tracked: list[str]) -> set[str]:
    """What the image needs, from the Dockerfile's own COPY lines and the dbt project's folders."""
    dockerfile = (PROJECT / "Dockerfile").read_text()
    sources = []
    for line in dockerfile.splitlines():
        copy = re.match(r"COPY\s+(.+)\s+\S+$", line)
        if copy and copy.group(1).strip() != ".":
            sources += copy.group(1).split()
    project = yaml.safe_load((PROJECT / "dbt_project.yml").read_text())
    for key, default in [("model-paths", ["models"]), ("macro-paths", ["macros"]), ("seed-paths", ["seeds"]),
                         ("test-paths", ["tests"]), ("analysis-paths", ["analyses"]),
                         ("snapshot-paths", ["snapshots"])]:
        sources += project.get(key, default)
    sources += ["dbt_project.yml", "profiles", "data/sample"]  # DBT_PROFILES_DIR; the sample the docs run
    prefixes = [source.rstrip("/") for source in sources]
    return {f for f in tracked if any(f == p or f.startswith(p + "/") for p in prefixes)}


def test_the_build_context_holds_only_what_the_image_needs(tmp_path):
    if shutil.which("podman") is None:
        missing("podman is not installed (`bash .ci/run` installs it): cannot compute the build context")
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True,
                             check=True).stdout.split()
    context = tmp_path / "context"
    for name in tracked + [".dockerignore"]:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT / name, context / name)
    for name in STRAYS:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text("must not reach the image")
    lister = tmp_path / "Dockerfile.context"
    lister.write_text("FROM scratch\nCOPY . /context/\n")
    tag = f"localhost/shopper-segments-context:{tmp_path.name.lower()}"

    def podman(*args: str) -> str:
        result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        return result.stdout.strip()

    podman("build", "--isolation=chroot", "--network", "host", "-f", str(lister), "-t", tag, str(context))
    try:
        container = podman("create", tag, "/none")
        try:
            podman("export", "-o", str(tmp_path / "context.tar"), container)
        finally:
            podman("rm", container)
    finally:
        podman("rmi", tag)
    with tarfile.open(tmp_path / "context.tar") as archive:
        sent = {m.name.removeprefix("context/") for m in archive.getmembers()
                if m.isfile() and m.name.startswith("context/")}

    assert not sent & set(STRAYS)
    assert sent == needed_files(tracked)
