"""A real PostgreSQL for tests: initdb into a temporary folder, a free port, trust auth.

Imported as ``from postgres import ...`` (pytest puts ``tests/`` on the path).
PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user
the Debian package creates. CI installs the package (``.ci/run``); elsewhere
the caller is skipped, saying what is missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checks import free_port


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return versions[-1] if versions else None


def _as_user() -> dict:
    """Popen's arguments that run PostgreSQL as a non-root user (it refuses root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as "
                    "(apt-get install postgresql creates it)")
    return {"user": "postgres", "group": "postgres"}


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A SQLAlchemy URL (user ``loopml``, no password) of a fresh PostgreSQL, stopped after."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'psycopg[binary]'")
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    as_user = _as_user()
    root = Path(tempfile.mkdtemp(prefix="loopml-pg-"))  # not under pytest's root-only tmp
    data = root / "data"
    if as_user:
        shutil.chown(root, as_user["user"], as_user["group"])
    subprocess.run([initdb, "-D", str(data), "-U", "loopml", "--auth=trust",
                    "--encoding=UTF8", "--no-sync"], check=True, capture_output=True,
                   **as_user)
    port = free_port()
    server = subprocess.Popen(
        [postgres, "-D", str(data), "-p", str(port), "-k", str(root),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
         "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **as_user)
    url = f"postgresql+psycopg://loopml@127.0.0.1:{port}/postgres"
    try:
        _wait_for_postgres(port, server)
        yield url
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: ends the open sessions
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_postgres(port: int, server: subprocess.Popen) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"PostgreSQL exited: {server.stderr.read()}")
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=loopml dbname=postgres",
                            connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise AssertionError("PostgreSQL did not accept connections within 60 s")
