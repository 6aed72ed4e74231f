"""The store under faults an operator meets: a container restart, a SIGHUP while the database
is locked, a database URL that cannot work here, and power loss (how durable a 2xx is).

Daemons run for real; "same pid after a restart" is a real PID namespace (`unshare`), in
which the daemon is PID 1 at every start, as in a container.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.conftest import ROOT, DaemonProcess, free_port, run_cli, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.slow_playbook import SLOW_CODES, SLOW_IDEMPOTENT
from tests.support.sshd import SshServer

SLOW_FILES = {"codes/zz-slow.yaml": SLOW_CODES, "playbooks/slow-idempotent.yaml": SLOW_IDEMPOTENT}
UNSHARE = ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child"]


class WrappedDaemon(DaemonProcess):
    """`suture serve` as the child of a wrapper (unshare, strace); signals go to the daemon itself."""

    def __init__(self, config_path: Path, port: int, wrapper: list[str]) -> None:
        super().__init__(config_path, port)
        self.wrapper = wrapper

    def start(self, timeout: float = 30.0) -> WrappedDaemon:
        argv = [*self.wrapper, sys.executable, "-m", "engine", "serve", "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.config_path.parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} ... serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"suture serve did not become ready:\n{self.log()}")

    def daemon_pid(self) -> int:
        """The daemon's pid as seen from here (the wrapper's one child)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.daemon_pid(), signum)
        except (OSError, IndexError, ValueError):
            pass  # already gone

    def kill(self) -> None:
        assert self.proc is not None
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def wrapped(tmp_path: Path) -> Iterator[Any]:
    """Start wrapped daemons on demand; every one is stopped at the end of the test."""
    started: list[WrappedDaemon] = []

    def start(config_path: Path, port: int, wrapper: list[str]) -> WrappedDaemon:
        daemon = WrappedDaemon(config_path, port, wrapper)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


def _can_unshare() -> bool:
    try:
        return subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _ssh_sections(sshd: SshServer) -> dict[str, Any]:
    return {
        "ssh": {"user": sshd.user, "key_file": str(sshd.key_file), "known_hosts": str(sshd.known_hosts)},
        "inventory": [{"match": "*", "address": "127.0.0.1", "port": sshd.port}],
    }


def _run(config: Path, run_id: int) -> dict[str, Any]:
    return run_cli("runs", "show", str(run_id), "--json", config=config)  # type: ignore[no-any-return]


def _events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    found = []
    for line in daemon.log().splitlines():
        if line.startswith("{"):
            entry = orjson.loads(line)
            if entry.get("event") == name:
                found.append(entry)
    return found


# ------------------------------------------------ defect 6: the same pid after a restart


@pytest.mark.skipif(not _can_unshare(), reason="needs PID namespaces (unshare as root)")
# Both row formats and both outcomes, each once (the outcome does not depend on the format).
@pytest.mark.parametrize(
    ("alertname", "expected", "rewrite_old_format"),
    [("SlowThing", "interrupted", True), ("SlowIdempotent", "queued", False)],
    ids=["interrupted-old-format-row", "queued-boot-id"],
)
def test_container_restart_with_same_pid_recovers_run_at_once(
    wrapped: Any,
    sshd: SshServer,
    tmp_path: Path,
    alertname: str,
    expected: str,
    rewrite_old_format: bool,
) -> None:
    """PID 1 again after kill -9: the predecessor's run is recovered at start, not after timeout+5min."""
    port = free_port()
    config = write_config(
        tmp_path / "site", f"sqlite:///{tmp_path / 'ns.db'}", port=port, **_ssh_sections(sshd)
    )
    for relative, text in SLOW_FILES.items():
        (config.parent / relative).write_text(text)
    first = wrapped(config, port, UNSHARE)
    earlier = set(sshd.commands())
    response = first.post("alertmanager", am_body(am_alert(alertname, fingerprint="ns1", instance="sshhost")))
    [run_id] = response.json()["runs_queued"]
    wait_for(lambda: _run(config, run_id)["status"] == "running")
    wait_for(lambda: sshd.running("sleep 60", besides=earlier))  # the SSH command is under way
    held_by = _run(config, run_id)["worker"]
    assert held_by.split(":")[:2] == [socket.gethostname(), "1"]  # PID 1 in its namespace
    first.kill()
    if rewrite_old_format:  # a row written by a daemon from before boot ids: host:pid:thread
        with sqlite3.connect(tmp_path / "ns.db") as conn:
            conn.execute("UPDATE runs SET worker = ? WHERE id = ?", (f"{socket.gethostname()}:1:0", run_id))
    assert _run(config, run_id)["status"] == "running"  # what the dead daemon left behind

    second = wrapped(config, port, UNSHARE)  # PID 1 again, same host name
    run = _run(config, run_id)
    kinds = [
        entry["kind"]
        for entry in run_cli("incidents", "show", str(run["incident_id"]), "--json", config=config)[
            "timeline"
        ]
    ]
    if expected == "interrupted":
        assert run["status"] == "interrupted"
        assert "interrupted" in run["error"]
        assert "run_interrupted" in kinds
    else:
        assert "run_requeued" in kinds
        # Claimed again by the new daemon: PID 1 too, but another boot id.
        again = wait_for(lambda: (r := _run(config, run_id))["status"] == "running" and r["worker"])
        assert again.split(":")[1] == "1" and again.rsplit(":", 1)[0] != held_by.rsplit(":", 1)[0]
    assert _events(second, "runs_recovered"), second.log()
    second.kill()  # its run may be in the middle of `sleep 60`, which a graceful stop would wait for


# ------------------------------------------------ SIGHUP while the database is locked


def test_sighup_while_database_locked_logs_failure_and_keeps_reloading(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """A reload that fails on the database logs catalog_reload_failed in one line; the next SIGHUP works."""
    db_path = tmp_path / "hup.db"
    daemon = daemon_factory(f"sqlite:///{db_path}", workers={"concurrency": 1, "poll_interval": "60s"})
    codes = daemon.config_path.parent / "codes" / "zz-new.yaml"
    codes.write_text("- code: NEW-001\n  title: New\n  severity: low\n  match: {alertname: BrandNew}\n")
    assert daemon.proc is not None
    # Another process holds SQLite's write lock past the busy timeout (a long `sqlite3` session).
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        daemon.proc.send_signal(signal.SIGHUP)
        [failed] = wait_for(lambda: _events(daemon, "catalog_reload_failed"), timeout=30)
    finally:
        blocker.close()
    assert "locked" in failed["error"] and "\n" not in failed["error"]
    assert "Traceback" not in daemon.log()
    codes_now = [c["code"] for c in daemon.get("/api/v1/codes")["items"]]
    assert "NEW-001" not in codes_now  # the last good catalog stays in force

    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "NEW-001" in [c["code"] for c in daemon.get("/api/v1/codes")["items"]], timeout=30)
    daemon.post("alertmanager", am_body(am_alert("BrandNew", fingerprint="hup1")))
    assert daemon.cli("incidents", "list")[0]["code"] == "NEW-001"


# ------------------------------------------------ defect 9: a database URL that cannot work here

BLOCK_PSYCOPG = '''\
"""Make psycopg absent, as on a machine without the postgres extra: the import fails as Python's own does."""
import sys


class _NoPsycopg:
    def find_spec(self, name, path=None, target=None):
        if name == "psycopg" or name.startswith(("psycopg.", "psycopg_")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoPsycopg())
'''

COMMANDS = [["serve"], ["db", "upgrade"], ["incidents", "list"], ["runs", "list", "--json"], ["pause"]]


def _suture(args: list[str], config: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [*pythonpath, ROOT])}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=config.parent,
    )


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_sqlite_path_in_missing_folder_is_one_line_exit_2(tmp_path: Path, args: list[str]) -> None:
    """database.url naming a file in a folder that does not exist: one line naming it, exit 2."""
    config = write_config(tmp_path, "sqlite:///no/such/folder/suture.db", port=free_port())
    result = _suture(args, config, [])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"config error: {config}: database.url: folder {tmp_path / 'no/such/folder'} does not exist"
    ]
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_postgresql_without_postgres_extra_is_one_line_exit_2(tmp_path: Path, args: list[str]) -> None:
    """A PostgreSQL URL where psycopg is not installed: one line saying which extra to install, exit 2."""
    blocker = tmp_path / "no-psycopg"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_PSYCOPG)
    probe = _suture_python(["-c", "import psycopg"], [blocker])
    assert probe.returncode == 1 and "No module named 'psycopg'" in probe.stderr  # the blocker works
    config = write_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:5432/test", port=free_port())
    result = _suture(args, config, [blocker])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"config error: {config}: database.url: PostgreSQL needs the postgres extra: "
        "pip install 'suture[postgres]'"
    ]


def _suture_python(args: list[str], pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [*pythonpath, ROOT])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, env=env)


# ------------------------------------------------ defect 10: a 2xx survives power loss


def _set_database(config_path: Path, **keys: str) -> None:
    config = yaml.safe_load(config_path.read_text())
    config["database"].update(keys)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize(("setting", "expected"), [(None, 2), ("full", 2), ("normal", 1)])
def test_daemon_connections_use_configured_synchronous(
    tmp_path: Path, setting: str | None, expected: int
) -> None:
    """The daemon's own database connections run synchronous=FULL by default, NORMAL only when opted out."""
    from engine.config import load_config
    from engine.daemon import Daemon

    config_path = write_config(tmp_path, "sqlite:///sync.db", port=free_port())
    if setting is not None:
        _set_database(config_path, sqlite_synchronous=setting)
    config = load_config(config_path)
    daemon = Daemon(config)
    try:
        with daemon.db.write() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        with daemon.db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
    finally:
        if daemon.helpers is not None:
            daemon.helpers.close()
        daemon.db.dispose()


def _wal_syncs(trace: Path) -> dict[int, int]:
    """fsync/fdatasync calls on the SQLite WAL file, per process, from `strace -f -y` output."""
    counts: dict[int, int] = {}
    for line in trace.read_text(errors="replace").splitlines():
        pid, _, call = line.partition(" ")
        if call.lstrip().startswith(("fsync(", "fdatasync(")) and "-wal>" in call:
            counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


HAS_STRACE = subprocess.run(["sh", "-c", "command -v strace"], capture_output=True).returncode == 0


@pytest.mark.skipif(not HAS_STRACE, reason="needs strace")
@pytest.mark.parametrize("setting", ["full", "normal"])
def test_every_202_from_intake_helper_is_synced_unless_opted_out(
    wrapped: Any, tmp_path: Path, setting: str
) -> None:
    """With full, the intake helper syncs the WAL before each 202 it answers; with normal it never does."""
    port = free_port()
    helper_on = {"intake_helpers": 1, "intake_helpers_above": 0}  # a helper starts at the first body
    config = write_config(tmp_path / "site", "sqlite:///wal.db", port=port, server=helper_on)
    _set_database(config, sqlite_synchronous=setting)
    trace = tmp_path / "strace.out"
    tracer = ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace)]
    daemon = wrapped(config, port, tracer)
    warm_up = daemon.post("alertmanager", am_body(am_alert("Unmatched", fingerprint="warm-up")))
    assert warm_up.status_code == 202, warm_up.text
    [ready] = wait_for(lambda: _events(daemon, "intake_helper_ready"), timeout=30)
    bodies = 20
    for n in range(bodies):  # one after another: one commit each; a ready helper takes them all
        response = daemon.post("alertmanager", am_body(am_alert("Unmatched", fingerprint=f"wal{n}")))
        assert response.status_code == 202, response.text
    daemon.stop()
    with sqlite3.connect(config.parent / "wal.db") as conn:
        stored = conn.execute("SELECT COUNT(*) FROM alerts WHERE fingerprint LIKE 'wal%'").fetchone()[0]
    assert stored == bodies
    helper_syncs = _wal_syncs(trace).get(int(ready["pid"]), 0)
    if setting == "full":
        assert helper_syncs >= bodies, _wal_syncs(trace)
    else:  # a checkpoint syncs the WAL whatever the setting; commits alone never do
        assert helper_syncs < bodies // 2, _wal_syncs(trace)
