"""Slow and dead peers met by real runs: an HTTP server that accepts and never answers, a closed
HTTP port, and an SSH server whose session dies in the middle of a step.

The daemon runs with one worker, so "the worker is freed" is visible: a second run can only
start once the first has ended. The SSH step against a closed port is already proven end to end
by tests/e2e/test_remediation_e2e.py::test_unreachable_host_fails_with_clear_message (and at the
action level by tests/integration/test_ssh_action.py::test_closed_port_is_a_retryable_error_naming_the_host);
a banner-less SSH server and a trickling HTTP body are covered by their own fault tests.
"""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, free_port, wait_for, write_config
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer
from tests.support.sshd import SshServer

CODES = """
- code: PEER-HTTP
  title: One HTTP call to the alert's hook
  severity: low
  match: {alertname: PeerHttp}
  target: "{{ labels.instance }}"
  playbook: peer-http
  mode: auto
- code: PEER-SSH
  title: One long SSH command
  severity: low
  match: {alertname: PeerSsh}
  target: "{{ labels.instance }}"
  playbook: peer-ssh
  mode: auto
"""
PLAYBOOKS = {
    "peer-http": """
        name: peer-http
        version: 1
        steps:
          - name: call the hook
            http: {method: POST, url: "{{ annotations.hook }}", json: {text: "hello"}, expect_status: [200]}
            timeout: 2s
    """,
    "peer-ssh": """
        name: peer-ssh
        version: 1
        timeout: 120s
        steps:
          - name: long command
            ssh: {command: "touch {{ annotations.marker }} && sleep 45 && echo done"}
            timeout: 90s
    """,
}


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never reads or answers: a wedged peer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def daemon(sshd: SshServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the module, with a single worker (tests wait for their runs to end)."""
    folder = tmp_path_factory.mktemp("peer-faults")
    port = free_port()
    config = write_config(
        folder,
        f"sqlite:///{folder / 'peer.db'}",
        port=port,
        ssh={
            "user": sshd.user,
            "key_file": str(sshd.key_file),
            "known_hosts": str(sshd.known_hosts),
            "connect_timeout": "3s",
        },
        inventory=[{"match": "*", "address": "127.0.0.1", "port": sshd.port}],
        http={"allowed_hosts": ["127.0.0.1"]},
        workers={"concurrency": 1, "poll_interval": "200ms"},
    )
    (folder / "codes" / "zz-peer.yaml").write_text(CODES)
    for name, body in PLAYBOOKS.items():
        (folder / "playbooks" / f"{name}.yaml").write_text(textwrap.dedent(body))
    server = DaemonProcess(config, port).start()
    try:
        yield server
    finally:
        server.stop()


def _fire(daemon: DaemonProcess, alertname: str, fingerprint: str, **annotations: str) -> int:
    alert = am_alert(alertname, fingerprint=fingerprint, instance=f"peer-{fingerprint}")
    alert["annotations"].update(annotations)
    response = daemon.post("alertmanager", am_body(alert))
    assert response.status_code == 202, response.text
    [run_id] = response.json()["runs_queued"]
    return int(run_id)


def _finished(daemon: DaemonProcess, run_id: int, timeout: float = 30.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = daemon.get(f"/api/v1/runs/{run_id}")
        return run if run["finished_at"] else None

    return wait_for(done, timeout=timeout, interval=0.1)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_http_peer_that_never_answers_times_out_and_frees_the_worker(
    daemon: DaemonProcess, hook: TestHttpServer, silent: SilentServer
) -> None:
    """An HTTP step to a server that accepts and never answers ends at its 2 s timeout, the run is
    `timed_out` saying so, and the only worker goes on to the next run, which reaches its hook."""
    wedged = _fire(daemon, "PeerHttp", "wedged", hook=f"http://127.0.0.1:{silent.port}/hook")
    after = _fire(daemon, "PeerHttp", "after", hook=hook.url_for("/next"))
    first = _finished(daemon, wedged)
    assert first["status"] == "timed_out", first
    assert "timed out after 2s" in first["error"] and f"127.0.0.1:{silent.port}" in first["error"]
    [step] = first["steps"]
    assert step["status"] != "succeeded" and step["http_status"] is None
    assert 1500 <= step["duration_ms"] < 10_000, step
    assert silent.accepted, "the step never reached the wedged server"
    second = _finished(daemon, after)
    assert second["status"] == "succeeded", second
    assert [r.path for r in hook.requests] == ["/next"]
    assert _at(second["started_at"]) >= _at(first["finished_at"])  # one worker, freed by the timeout


def test_http_step_to_a_closed_port_fails_saying_so(daemon: DaemonProcess) -> None:
    """An HTTP step to a port nobody listens on fails at once with an error naming the URL and the refusal."""
    port = free_port()
    run = _finished(daemon, _fire(daemon, "PeerHttp", "closed", hook=f"http://127.0.0.1:{port}/hook"))
    assert run["status"] == "failed", run
    assert f"http POST http://127.0.0.1:{port}/hook" in run["error"]
    assert "refused" in run["error"].lower(), run["error"]
    assert run["steps"][0]["duration_ms"] < 5000


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def test_ssh_peer_dying_mid_step_fails_the_run_promptly(
    daemon: DaemonProcess, sshd: SshServer, hook: TestHttpServer, tmp_path: Path
) -> None:
    """The SSH session's server side is killed while the command runs: the run fails at once with a
    connection error (not at its 90 s timeout), and the worker takes the next run."""
    marker = tmp_path / "started"
    dying = _fire(daemon, "PeerSsh", "dying", marker=str(marker))
    wait_for(marker.exists, timeout=20)
    sessions = _descendants(sshd.process.pid)
    assert sessions, "no sshd session process to kill"
    for pid in sessions:  # the listener stays up: only this connection dies
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    after = _fire(daemon, "PeerHttp", "after-ssh", hook=hook.url_for("/after"))
    run = _finished(daemon, dying, timeout=30)
    assert run["status"] == "failed", run
    assert "peer-dying" in run["error"] and "connection was lost" in run["error"], run["error"]
    assert run["steps"][-1]["duration_ms"] < 30_000
    assert _finished(daemon, after)["status"] == "succeeded"
    assert [r.path for r in hook.requests] == ["/after"]
