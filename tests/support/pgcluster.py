"""A private, throwaway PostgreSQL cluster on 127.0.0.1 for tests that stop and start the server.

The machine's shared PostgreSQL serves every engineer's tests and must never be stopped; a test
that needs an outage starts its own cluster here (initdb into a temp dir, trust auth, a free
port, the socket in the temp dir) and stops it with `pg_ctl -m immediate`, which is what a
crash or an OOM kill looks like to the daemon. PostgreSQL refuses to run as root, so when the
tests run as root the cluster belongs to the `postgres` OS user (`runuser -u postgres --`).

    with private_postgres() as pg:
        url = pg.url            # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
        pg.stop("immediate")    # the daemon sees connections refused
        pg.start()
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PgCluster", "initdb_path", "private_postgres"]

START_TIMEOUT = 30.0


def initdb_path() -> Path | None:
    """The newest installed `initdb`, or None when PostgreSQL's server binaries are missing."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major, reverse=True)
    if found:
        return Path(found[0])
    on_path = shutil.which("initdb")
    return Path(on_path) if on_path else None


def _major(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """One private cluster: its data dir, port and the URLs to reach it."""

    bindir: Path
    datadir: Path
    sockdir: Path
    port: int
    log_file: Path
    owner: str | None  # OS user the server runs as (None: the current user)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's `postgres` database, as the daemon's config wants it."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        """libpq URL for psycopg in the test itself."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.owner, "--", *argv] if self.owner else list(argv)

    def _pg_ctl(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args),
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            check=False,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = self._pg_ctl(
            "-o", options, "-l", str(self.log_file), "-w", "-t", str(int(START_TIMEOUT)), "start"
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self.log()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clean), or `immediate` (no shutdown checkpoint, like a crash)."""
        result = self._pg_ctl("-m", mode, "-w", "stop")
        if result.returncode != 0 and "not running" not in result.stderr + result.stdout:
            raise RuntimeError(f"pg_ctl stop failed: {result.stdout}{result.stderr}")

    def running(self) -> bool:
        return self._pg_ctl("status", timeout=5).returncode == 0

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def _owner() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root needs a `postgres` OS user to own the test cluster") from exc
    return "postgres"


@contextmanager
def private_postgres() -> Iterator[PgCluster]:
    """initdb, start, yield the running cluster; stop it and delete its files afterwards."""
    initdb = initdb_path()
    if initdb is None:
        raise RuntimeError("initdb not found: install PostgreSQL's server package")
    owner = _owner()
    tmp = Path(tempfile.mkdtemp(prefix="suture-pg-"))
    os.chmod(tmp, 0o755)
    datadir, sockdir = tmp / "data", tmp / "sock"
    sockdir.mkdir()
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for path in (tmp, sockdir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    cluster = PgCluster(initdb.parent, datadir, sockdir, _free_port(), tmp / "postgres.log", owner)
    try:
        result = subprocess.run(
            cluster._as_owner(
                str(initdb), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")
        cluster.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", cluster.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        except Exception:  # noqa: BLE001 - cleanup must go on to delete the files
            pass
        shutil.rmtree(tmp, ignore_errors=True)
