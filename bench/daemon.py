"""Start and stop the servers under test: the real `suture serve` and the ceiling app.

Each server is a subprocess on a free loopback port with its own temporary directory, its
log in a file there, and a SQLite database the benchmark reads back with `sqlite3`, or a
throwaway PostgreSQL database (`pg_database`, at 127.0.0.1:5432, user postgres, trust) it reads
back with psycopg.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname={name}"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

#: Auto code for latency and storm: a single `wait: 0s` step.
AUTO_ALERTNAME = "BenchAlert"
#: Manual code for the ingest figures: classified and stored, never runs anything, so
#: repeated ingest runs do not queue work that would compete with the next measurement.
INGEST_ALERTNAME = "BenchIngest"

BENCH_CODES = f"""\
- code: BENCH-001
  title: Benchmark alert with an automatic no-op playbook
  severity: low
  match: {{source: alertmanager, alertname: {AUTO_ALERTNAME}}}
  target: "{{{{ labels.instance.split(':')[0] }}}}"
  playbook: bench-noop
  mode: auto
- code: BENCH-002
  title: Benchmark alert, stored only
  severity: low
  match: {{source: alertmanager, alertname: {INGEST_ALERTNAME}}}
  target: "{{{{ labels.instance.split(':')[0] }}}}"
  playbook: bench-noop
  mode: manual
"""

BENCH_PLAYBOOK = """\
name: bench-noop
version: 1
description: One step that waits zero seconds; measures the engine, not the action.
steps:
  - name: nothing
    wait: 0s
"""


#: Set by `python -m bench --gates`: every guard rail on, none tight enough to hold a bench run.
GATES_ENV = "SUTURE_BENCH_GATES"
GATED_POLICY = """  policy:
    storm: {incidents: 100000, within: 5m}
    flapping: {changes: 1000, within: 1h}
    breaker: {failures: 1000}
"""
GATED_CONFIG: dict[str, Any] = {
    "automation": {"max_runs_per_minute": 1000000, "per_target": {"max_runs": 100000, "per": "1h"}},
    "maintenance": [
        {"name": "never-matches", "match": {"code": "NOPE-.*"}, "cron": "* * * * *", "duration": "59s"}
    ],
}

#: Set by `python -m bench --dead-channel EVENTS`: every daemon gets a channel that refuses connections.
DEAD_CHANNEL_ENV = "SUTURE_BENCH_DEAD_CHANNEL"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_site(
    folder: Path, port: int, concurrency: int = 8, synchronous: str = "full", database_url: str | None = None
) -> Path:
    """config.yaml, codes/ and playbooks/ for one daemon; returns the config path. Its database
    is `suture.db` in `folder` unless `database_url` names another (a PostgreSQL one)."""
    (folder / "codes").mkdir(parents=True, exist_ok=True)
    (folder / "playbooks").mkdir(parents=True, exist_ok=True)
    gated = bool(os.environ.get(GATES_ENV))
    codes = BENCH_CODES.replace("  mode: auto\n", "  mode: auto\n" + GATED_POLICY) if gated else BENCH_CODES
    (folder / "codes" / "bench.yaml").write_text(codes)
    (folder / "playbooks" / "bench-noop.yaml").write_text(BENCH_PLAYBOOK)
    config: dict[str, Any] = {
        "database": {"url": database_url or "sqlite:///suture.db", "sqlite_synchronous": synchronous},
        "server": {"host": "127.0.0.1", "port": port},
        "catalog": {"codes_dir": "codes", "playbooks_dir": "playbooks"},
        "workers": {"concurrency": concurrency},
        "logging": {"level": "warning", "format": "json"},
    }
    if gated:
        config.update(GATED_CONFIG)
    if events := os.environ.get(DEAD_CHANNEL_ENV):
        # A notification channel whose port nobody listens on (`--dead-channel EVENTS`).
        url = f"http://127.0.0.1:{free_port()}/dead"
        config["notifications"] = [
            {"name": "dead", "kind": "webhook", "url": url, "events": events.split(",")}
        ]
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _proc_status(pid: int, key: str) -> int:
    """A /proc/<pid>/status field in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database `suture_bench_<random>`, dropped after; yields its name."""
    import psycopg

    name = f"suture_bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_DSN.format(name="postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_DSN.format(name="postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Server:
    """A server subprocess on loopback; `ready_seconds` is spawn to first 200 on `ready_path`.

    Its database is the SQLite file `db_path`, or the PostgreSQL database `pg_name` when given."""

    def __init__(
        self,
        folder: Path,
        argv: list[str],
        port: int,
        db_path: Path,
        ready_path: str,
        pg_name: str | None = None,
    ) -> None:
        self.folder = folder
        self.argv = argv
        self.port = port
        self.db_path = db_path
        self.pg_name = pg_name
        self.ready_path = ready_path
        self.log_path = folder / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_seconds = float("nan")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Server:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        with self.log_path.open("ab") as log:
            began = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder
            )
        deadline = began + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[2:]} exited with {self.proc.returncode}:\n{self.log()}")
            if _http_status(self.port, self.ready_path) == 200:
                self.ready_seconds = time.perf_counter() - began
                return self
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"server not ready within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def rss(self) -> int:
        """VmRSS of the server and its live child processes (Suture's intake helpers)."""
        return sum(_proc_status(pid, "VmRSS") for pid in self.pids())

    def peak_rss(self) -> int:
        """Sum of each live process's own peak (VmHWM): an upper bound of the peak together."""
        return sum(_proc_status(pid, "VmHWM") for pid in self.pids())

    def pids(self) -> list[int]:
        pids = [self.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited while we looked
            if int(fields[1]) == self.pid:
                pids.append(int(stat.parent.name))
        return pids

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the server's SQLite database (WAL: reads while it writes)."""
        if self.pg_name is not None:
            raise RuntimeError("a PostgreSQL server: use count()")
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            yield conn
        finally:
            conn.close()

    def count(self, table: str) -> int:
        """Rows in `table` of the server's database, whichever backend it is."""
        query = f"SELECT COUNT(*) FROM {table}"
        if self.pg_name is None:
            with self.db() as conn:
                return int(conn.execute(query).fetchone()[0])
        import psycopg

        with psycopg.connect(PG_DSN.format(name=self.pg_name), autocommit=True) as pg:
            row = pg.execute(query).fetchone()
            assert row is not None
            return int(row[0])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def suture(
    folder: Path, concurrency: int = 8, synchronous: str = "full", pg_name: str | None = None
) -> Server:
    """The real daemon, not yet started: `python -m engine serve --config <folder>/config.yaml`.

    `synchronous` is `database.sqlite_synchronous`: `full` (durable, the default) or `normal`.
    With `pg_name` its store is that (empty) PostgreSQL database, which `serve` migrates.
    """
    port = free_port()
    url = PG_URL.format(name=pg_name) if pg_name is not None else None
    config = write_site(folder, port, concurrency, synchronous, url)
    argv = [sys.executable, "-m", "engine", "serve", "--config", str(config)]
    return Server(folder, argv, port, folder / "suture.db", "/readyz", pg_name)


def ceiling(folder: Path, synchronous: str = "full") -> Server:
    """The bare FastAPI + SQLite app (bench/ceiling.py), not yet started, as durable as Suture."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db_path = folder / "ceiling.db"
    argv = [sys.executable, "-m", "bench.ceiling", "--port", str(port), "--db", str(db_path)]
    argv += ["--synchronous", synchronous]
    return Server(folder, argv, port, db_path, "/healthz")


def ceiling_pg(folder: Path, pg_name: str) -> Server:
    """The bare FastAPI + psycopg app (bench/ceiling_pg.py) on the (empty) PostgreSQL database
    `pg_name`, not yet started; synchronous_commit stays on, the server's default."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.ceiling_pg",
        "--port",
        str(port),
        "--dsn",
        PG_DSN.format(name=pg_name),
    ]
    return Server(folder, argv, port, folder / "unused.db", "/healthz", pg_name)
