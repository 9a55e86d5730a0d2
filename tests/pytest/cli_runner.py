"""Run `segments <args>` as its own process, forked from a server that has already imported dbt.

Every `segments` call of the tests is a separate process, as a user's is: its own environment, working
directory, exit code, stdout and stderr, and nothing it does in memory outlives it. Started with
`python -m shopper_segments.cli`, each call paid dbt's import (about 4 s) before doing anything, and
the suite makes a few hundred calls. So each pytest worker starts one server (this file run as a
script) that imports dbt, its adapters and the project's CLI once and then only forks: the child
starts where `python -m` would be after its imports and runs the same `shopper_segments.cli.main`,
with file descriptors 0, 1 and 2 redirected (everything it prints, dbt's log lines included, is
captured as a subprocess's output would be).

The server never opens a database or runs a computation, so forking it is safe. The test that
kills a run midway (test_incremental.py) starts a real `python -m` process instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# What the server imports once: dbt and its adapters (most of the start-up time), the project's CLI, and
# what the dbt Python models and the report import (scikit-learn, pandas, scipy: about 4 s more per
# build that fits). Importing starts no computation: OpenBLAS stops its threads before a fork and
# restarts them on first use, and OpenMP starts its pool only at the first parallel region.
PRELOADED = ("dbt.cli.main", "dbt.adapters.duckdb", "dbt.adapters.postgres", "shopper_segments.cli",
             "shopper_segments.model.duckdb_inputs", "shopper_segments.model.training",
             "shopper_segments.model.fit", "shopper_segments.report")


def _serve() -> None:
    """The server: one JSON request per line on stdin, one exit code per line on stdout."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    requests, replies = sys.stdin, sys.stdout
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(**request)
        _, status = os.waitpid(pid, 0)
        replies.write(f"{os.waitstatus_to_exitcode(status)}\n")
        replies.flush()


def _child(args: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str) -> None:
    """The forked process: the environment, folder and output files of the call, then the CLI."""
    code = 1
    try:
        for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, stdout, os.O_WRONLY), (2, stderr, os.O_WRONLY)):
            opened = os.open(path, mode)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, closefd=False)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv = ["segments", *args]
        from shopper_segments.cli import main

        code = main(args)
    except SystemExit as stop:  # argparse, or a command that exits itself
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:  # sys.exit("message"): Python prints the message on stderr and exits with 1
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # a bug: its traceback on stderr and exit code 1, as `python -m` does
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class _Server:
    """This process's server, started on first use (one per pytest-xdist worker)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def call(self, request: dict) -> int:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, text=True)
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            reply = self.process.stdout.readline()
            if not reply:
                raise RuntimeError(f"the segments fork server stopped (exit code {self.process.wait()})")
            return int(reply)


_SERVER = _Server()


def run_segments(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`segments <args>` in its own process; the result has the returncode, stdout and stderr."""
    with tempfile.TemporaryDirectory(prefix="segments-call-") as folder:
        stdout, stderr = Path(folder) / "stdout", Path(folder) / "stderr"
        stdout.touch()
        stderr.touch()
        started = time.monotonic()
        code = _SERVER.call({"args": list(args), "env": dict(env), "cwd": str(cwd),
                             "stdout": str(stdout), "stderr": str(stderr)})
        _log_call(args, time.monotonic() - started)
        return subprocess.CompletedProcess(["segments", *args], code, stdout.read_text(errors="replace"),
                                           stderr.read_text(errors="replace"))


def _log_call(args: list[str], seconds: float) -> None:
    """With SEGMENTS_TEST_CALL_LOG set to a file, one JSON line per call (test, arguments, seconds):
    where the suite's time goes, call by call (`python tests/pytest/call_times.py <file>` sums it)."""
    log = os.environ.get("SEGMENTS_TEST_CALL_LOG")
    if log:
        line = json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", ""), "args": list(args),
                           "seconds": round(seconds, 2), "worker": os.environ.get("PYTEST_XDIST_WORKER", "")})
        with open(log, "a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    _serve()
