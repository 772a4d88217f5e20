"""A real PostgreSQL server on loopback for the governance tests: Debian's binaries, a throwaway cluster.

``ENGAGE_TEST_POSTGRES_URL`` names a server to use instead (its database is emptied per test). Without
either, the PostgreSQL half of the tests is skipped with the reason, unless ``ENGAGE_REQUIRE_POSTGRES=1``
(CI sets it: there a missing server is a failure, not a skip).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.serving_support import free_port

__all__ = ["pg_bindir", "postgres_server", "required"]


#: settings of a cluster that need not survive a power cut (the tests'): no fsync, asynchronous commits
_THROWAWAY = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]


def required() -> bool:
    return os.environ.get("ENGAGE_REQUIRE_POSTGRES", "") in {"1", "true", "yes"}


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[str]:
    """Start a PostgreSQL cluster in a new folder of /tmp on a free loopback port; yields its admin URL
    (``postgresql+psycopg://engage@127.0.0.1:<port>/postgres``, trust authentication on loopback).

    ``durable``: fsync and synchronous commits on, as in production (the benchmark); the tests turn
    them off (a throwaway cluster need not survive a power cut)."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL binaries (apt-get install postgresql)")
    # its own folder directly in /tmp: as root the server runs as ``postgres``, which must reach it
    workdir = Path(tempfile.mkdtemp(prefix="engage-pg-"))
    data = workdir / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    subprocess.run(
        _as_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "engage",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    port = free_port()
    log = workdir / "postgres.log"
    server = subprocess.Popen(
        _as_owner(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(workdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
                *([] if durable else _THROWAWAY),
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb") if os.geteuid() != 0 else subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            )
            if ready.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start on port {port} (exit {server.poll()})")
            time.sleep(0.2)
        yield f"postgresql+psycopg://engage@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
