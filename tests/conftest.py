"""Shared fixtures: a database on SQLite and on the machine's PostgreSQL, one real sshd and one
loopback HTTP server per session, and the real daemon.

Tiers (README, "Development"): tests/unit needs none of these; tests/integration needs sshd
and PostgreSQL; tests/e2e and tests/faults start daemons too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from engine.store import open_database
from engine.store.db import Database
from tests.support.httpserver import TestHttpServer
from tests.support.pgtemplate import ADMIN_URL, DATABASES
from tests.support.sshd import SshServer, running_sshd

ROOT = Path(__file__).resolve().parent.parent
TEST_CATALOG = Path(__file__).resolve().parent / "catalog"
PG_ADMIN_URL = ADMIN_URL
#: PostgreSQL databases of this session: copies of one template migrated once.
PG_DATABASES = DATABASES
#: This test process's migrated SQLite file, copied per test (sqlite_template).
SQLITE_TEMPLATE: Path | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlite_template() -> Path:
    """An SQLite file the migrations built, once per test process (removed at session end)."""
    global SQLITE_TEMPLATE
    if SQLITE_TEMPLATE is None:
        path = Path(tempfile.mkdtemp(prefix="suture-sqlite-template-")) / "suture.db"
        open_database(f"sqlite:///{path}", upgrade=True).dispose()  # the last close folds the WAL in
        SQLITE_TEMPLATE = path
    return SQLITE_TEMPLATE


def throwaway_database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database URL: a copy of a migrated SQLite file in `folder`, or a PostgreSQL
    database dropped after, a copy of the session's migrated template. Either is at head, so
    the daemon and `open_database(url, upgrade="if_behind")` neither migrate nor import alembic;
    a test of migrating from nothing names a path of its own."""
    if kind == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sqlite_template(), folder / "suture.db")
        yield f"sqlite:///{folder / 'suture.db'}"
        return
    name = PG_DATABASES.create()
    try:
        yield PG_DATABASES.url(name)
    finally:
        PG_DATABASES.drop(name)


def pytest_sessionfinish(session: pytest.Session) -> None:
    PG_DATABASES.close()
    if SQLITE_TEMPLATE is not None:
        shutil.rmtree(SQLITE_TEMPLATE.parent, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a new SQLite file, or a throwaway PostgreSQL copy of the migrated template."""
    yield from throwaway_database(request.param, tmp_path)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """The store's database on `db_url`, migrated; disposed after the test."""
    database = open_database(db_url, upgrade=True)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway PostgreSQL database, for a test about PostgreSQL alone (request it first, so
    it is dropped after the daemons using it are stopped)."""
    yield from throwaway_database("postgresql", tmp_path)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One real sshd for the session (tests/support/sshd.py). A test that would break it (stop
    the listener, change its host key) starts its own with `with running_sshd() as server:`."""
    with running_sshd() as server:
        yield server


@pytest.fixture(scope="session")
def _session_http_server() -> Iterator[TestHttpServer]:
    server = TestHttpServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_server(_session_http_server: TestHttpServer) -> Iterator[TestHttpServer]:
    """The session's loopback HTTP server (tests/support/httpserver.py), reset before and after
    this test: no requests recorded, nothing scripted, slow answers of the last test abandoned."""
    _session_http_server.reset()
    yield _session_http_server
    _session_http_server.reset()


@pytest.fixture
def hook(http_server: TestHttpServer) -> TestHttpServer:
    """The HTTP server playbooks' `http` steps call (the name the runner and daemon tests use)."""
    return http_server


def write_config(
    folder: Path, db_url: str, port: int = 0, catalog: Path = TEST_CATALOG, **sections: Any
) -> Path:
    """A config.yaml plus a private copy of the catalog in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("codes", "playbooks"):
        if not (folder / part).exists():
            shutil.copytree(catalog / part, folder / part)
    config: dict[str, Any] = {
        "database": {"url": db_url},
        "server": {"host": "127.0.0.1", "port": port},
        "catalog": {"codes_dir": "codes", "playbooks_dir": "playbooks"},
        "workers": {"concurrency": 4},
        "logging": {"level": "info", "format": "json"},
    }
    for key, value in sections.items():
        # `server` adds to the host and port chosen here; other sections replace the default.
        config[key] = {**config["server"], **value} if key == "server" else value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class DaemonProcess:
    """`suture serve` in a subprocess on a free loopback port."""

    def __init__(self, config_path: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = config_path.parent / f"serve-{port}.log"
        # The daemon runs the code under test, whatever `suture` is installed on the machine.
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> DaemonProcess:
        """Start and wait for /readyz; the bound is generous because two busy cores may take
        many times the usual start, while a daemon that exits fails at once."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.config_path.parent,
        )
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"suture serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=1)
                if answer.status_code == 200:
                    return self
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
        raise RuntimeError(f"suture serve not ready in {timeout:.0f}s (last /readyz: {last}):\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def post(self, source: str, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        return httpx.post(
            f"{self.url}/api/v1/alerts/{source}", content=content, headers=headers, timeout=10, **kwargs
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        response = httpx.get(f"{self.url}{path}", headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def cli(self, *args: str) -> Any:
        """Run the real `suture` CLI with --json against this daemon's database."""
        return run_cli(*args, "--json", config=self.config_path)


def run_cli(*args: str, config: Path, check: bool = True) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "engine", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"suture {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return orjson.loads(result.stdout) if "--json" in args else result


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    """Start daemons on demand; every one is stopped at the end of the test."""
    started: list[DaemonProcess] = []

    def start(
        db_url: str, env: dict[str, str] | None = None, files: dict[str, str] | None = None, **sections: Any
    ) -> DaemonProcess:
        port = free_port()
        config = write_config(tmp_path / "site", db_url, port=port, **sections)
        for relative, text in (files or {}).items():
            (config.parent / relative).write_text(text)
        daemon = DaemonProcess(config, port, env).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(daemon_factory: Any, db_url: str) -> DaemonProcess:
    """The real daemon on a fresh database (runs on SQLite and PostgreSQL)."""
    return daemon_factory(db_url)
