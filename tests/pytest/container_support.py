"""Podman helpers for the container smoke test: a locally made base image, built once per machine.

No registry is reachable from the build machines, so the base image (Debian bookworm with python3,
python3-venv and python3-pip) is made with debootstrap and `podman import`. It is cached twice: as a
podman image (`BASE_IMAGE`) and as a root file system tarball under CACHE_DIR, so later runs on the
same machine reuse it (a lock keeps concurrent runs from building it twice).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from pg_support import missing

BASE_IMAGE = os.environ.get("SEGMENTS_BASE_IMAGE", "localhost/shopper-segments-base:bookworm")
CACHE_DIR = Path(os.environ.get("SEGMENTS_CONTAINER_CACHE", "/var/cache/shopper-segments"))
DEBIAN_MIRROR = os.environ.get("SEGMENTS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What podman needs on these machines (no Docker engine, no registry): see docs/deployment.md.
BUILD_FLAGS = [
    "--isolation=chroot", "--network", "host",
    "-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
]
RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def report(config, text: str) -> None:
    """A line in pytest's output even when output is captured (the timings CI should show)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)


def require_tools() -> None:
    """Skip loudly (fail in CI) when the container tools are missing."""
    needed = ["podman", "runc"] + ([] if os.environ.get("SEGMENTS_BASE_IMAGE") else ["debootstrap"])
    absent = [tool for tool in needed if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    if absent:
        missing(f"container tools not installed: {', '.join(absent)} "
                "(`bash .ci/run` installs them: apt-get install podman buildah debootstrap runc)")
    if os.geteuid() != 0:
        missing("the container smoke test needs root (debootstrap and rootful podman)")


def podman(*args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@contextmanager
def _machine_lock(name: str):
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _debootstrap_tarball(tarball: Path) -> None:
    """A minimal bookworm root file system with Python, packed as a tarball for `podman import`."""
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE_DIR))
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip",
             "bookworm", str(rootfs), DEBIAN_MIRROR],
            check=True, capture_output=True, text=True, timeout=1200,
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
        partial.rename(tarball)
    except subprocess.CalledProcessError as error:
        raise AssertionError(f"debootstrap failed:\n{error.stdout[-3000:]}\n{error.stderr[-3000:]}") from None
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def ensure_base_image(log=print) -> tuple[str, float]:
    """The base image tag, made if missing; returns (tag, seconds spent making it)."""
    started = time.perf_counter()
    with _machine_lock("base-image.lock"):
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE, 0.0
        if os.environ.get("SEGMENTS_BASE_IMAGE"):
            raise AssertionError(f"SEGMENTS_BASE_IMAGE={BASE_IMAGE} does not exist in podman's storage")
        tarball = CACHE_DIR / "bookworm-python-minbase.tar"
        if not tarball.exists():
            log(f"making the base image with debootstrap ({DEBIAN_MIRROR}) into {tarball}")
            _debootstrap_tarball(tarball)
        podman("import", "--change", 'CMD ["/bin/bash"]', str(tarball), BASE_IMAGE)
    return BASE_IMAGE, time.perf_counter() - started


# buildah's chroot isolation sometimes fails to seal the memfd copy of itself on a busy machine
# ("Close_Fd sealing memfd copy: Device or resource busy"): a transient error worth one more try.
TRANSIENT_BUILD_ERRORS = ("sealing memfd", "Device or resource busy")


def build_image(context: Path, base: str, tag: str, iidfile: Path, attempts: int = 3) -> str:
    """`podman build` of the project's Dockerfile on `base`; returns the image id.

    Retried only on known transient errors; finished layers are cached, so a retry resumes.
    """
    args = ("build", *BUILD_FLAGS, "--build-arg", f"BASE_IMAGE={base}", "--iidfile", str(iidfile), "-t", tag,
            str(context))
    for attempt in range(1, attempts + 1):
        result = podman(*args, timeout=1800, check=False)
        if result.returncode == 0:
            return iidfile.read_text().strip()
        transient = any(marker in result.stdout + result.stderr for marker in TRANSIENT_BUILD_ERRORS)
        if not transient or attempt == attempts:
            raise AssertionError(f"podman build failed ({result.returncode}, attempt {attempt}):\n"
                                 f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        time.sleep(2)
    raise AssertionError("unreachable")


def run(image: str, *args: str, options: list[str] = (), timeout: int = 900, check: bool = True):
    """`podman run --rm` with the flags these machines need."""
    return podman("run", "--rm", *RUN_FLAGS, *options, image, *args, timeout=timeout, check=check)
