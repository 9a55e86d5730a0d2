"""A private PostgreSQL 15 server for the tests: temporary data directory, loopback only, own port.

The server is started once per pytest session (by the first test that needs it) and stopped when
the session ends. `initdb` refuses to run as root, so as root the server runs as the `postgres`
user. Tests that need it call `require_postgres()`: outside CI a missing PostgreSQL skips them
loudly; with CI=true it fails them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("SEGMENTS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


def missing(reason: str) -> None:
    """Skip the test (say why) on a developer machine; fail it in CI, where nothing may be skipped."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *command]
    return command


@dataclass
class PostgresServer:
    """A running server; `env(database)` gives the SEGMENTS_PG_* variables the project reads."""

    root: Path
    port: int
    password: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def env(self, database: str) -> dict[str, str]:
        return {
            "SEGMENTS_PG_HOST": "127.0.0.1",
            "SEGMENTS_PG_PORT": str(self.port),
            "SEGMENTS_PG_USER": PG_USER,
            "SEGMENTS_PG_PASSWORD": self.password,
            "SEGMENTS_PG_DATABASE": database,
        }

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, password=self.password, dbname=database
        )

    def create_database(self, name: str) -> dict[str, str]:
        """A new, empty database (dropped first if a previous run left it); returns its env."""
        con = self.connect()
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'drop database if exists "{name}"')
            cur.execute(f'create database "{name}"')
        con.close()
        return self.env(name)

    def query(self, database: str, sql: str) -> list[tuple]:
        con = self.connect(database)
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            con.close()

    def stop(self) -> None:
        subprocess.run(
            _as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """initdb in a temporary folder, then start on a free loopback port with a random password."""
    if not (PG_BIN / "initdb").exists():
        missing(f"PostgreSQL 15 server binaries are not installed ({PG_BIN}/initdb not found); "
                "`bash .ci/run` installs them (apt-get install postgresql-15)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing("running as root and `runuser` is missing: cannot start PostgreSQL as the postgres user")
    root = Path(tempfile.mkdtemp(prefix="segments-pg-"))
    password = secrets.token_hex(16)
    (root / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
        shutil.chown(root / "pwfile", PG_USER, PG_USER)
    server = PostgresServer(root, 0, password)
    initdb = [
        str(PG_BIN / "initdb"), "-D", str(server.data_dir), "-U", PG_USER, "--pwfile", str(root / "pwfile"),
        "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync",
    ]
    result = subprocess.run(_as_server_user(initdb), capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
    for _attempt in range(5):
        server.port = _free_port()
        options = (
            f"-p {server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            # A throw-away test server: durability is not needed, speed is.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = [str(PG_BIN / "pg_ctl"), "-D", str(server.data_dir), "-o", options,
                 "-l", str(root / "server.log"), "-w", "-t", "60", "start"]
        if subprocess.run(_as_server_user(start), capture_output=True).returncode == 0:
            break
        time.sleep(0.5)  # the port was taken meanwhile: try another one
    else:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start:\n{log}")
    return server


_server: PostgresServer | None = None


def shared_server(config: pytest.Config) -> PostgresServer:
    """The session's server, started on first use and stopped when pytest finishes."""
    global _server
    if _server is None:
        _server = start_server()
        server = _server

        def stop():
            global _server
            server.stop()
            _server = None

        config.add_cleanup(stop)
    return _server
