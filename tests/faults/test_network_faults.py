"""Hostile peers on 127.0.0.1: an SSH port that never speaks, an HTTP server that trickles its answer."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config, HttpConfig, SshConfig
from engine.execution.actions.base import ActionContext
from engine.execution.actions.http import HttpAction
from engine.execution.actions.ssh import SshAction
from engine.models import ActionResult, HttpStep, SshStep
from tests.conftest import DaemonProcess, wait_for
from tests.payloads import am_alert, am_body
from tests.support.httpserver import TestHttpServer
from tests.support.trickle import trickling_server


@dataclass
class FakePeer:
    """A TCP listener that accepts and then does `behaviour` with each connection."""

    port: int
    accepted: list[socket.socket] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


@contextmanager
def tcp_peer(behaviour: str, payload: bytes = b"") -> Iterator[FakePeer]:
    """`silent` accepts and says nothing; `send` sends `payload`; `close` hangs up at once."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)  # so the loop sees `stop`: closing a socket does not wake accept()
    peer = FakePeer(port=server.getsockname()[1])

    def serve() -> None:
        while not peer.stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peer.accepted.append(conn)
            if behaviour == "send":
                conn.sendall(payload)
            elif behaviour == "close":
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        peer.stop.set()
        server.close()
        for conn in peer.accepted:
            conn.close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def ssh_step(port: int, key_file: Path, connect_timeout: float = 2) -> tuple[ActionResult, float]:
    config = Config(
        ssh=SshConfig(
            user="ops",
            port=port,
            key_file=str(key_file),
            known_hosts=str(key_file.parent / "known_hosts"),
            connect_timeout=timedelta(seconds=connect_timeout),
        )
    )
    ctx = ActionContext(config=config, target="127.0.0.1", timeout_seconds=20, output_limit_bytes=4096)
    started = time.monotonic()
    result = SshAction().execute(SshStep(command="true"), ctx)
    return result, time.monotonic() - started


def test_ssh_port_without_banner_says_so_within_connect_timeout(key_file: Path) -> None:
    """A port that accepts but never sends a banner: "no SSH banner from HOST:PORT within 2s", in time."""
    with tcp_peer("silent") as peer:
        result, took = ssh_step(peer.port, key_file)
        assert len(peer.accepted) == 1
    assert not result.ok
    assert result.retryable
    assert result.error == f"cannot connect to 127.0.0.1: no SSH banner from 127.0.0.1:{peer.port} within 2s"
    assert 1.5 <= took < 8


def test_ssh_port_sending_garbage_is_not_an_ssh_server(key_file: Path) -> None:
    """A port that answers with HTTP instead of a banner: the message says so and shows what it sent."""
    with tcp_peer("send", b"HTTP/1.1 400 Bad Request\r\n\r\n") as peer:
        result, took = ssh_step(peer.port, key_file)
    assert not result.ok
    assert result.retryable
    assert result.error == (
        f"cannot connect to 127.0.0.1: no SSH banner from 127.0.0.1:{peer.port} within 2s "
        "(it sent b'HTTP/1.1 400 Bad Request\\r\\n\\r\\n': not an SSH server?)"
    )
    assert took < 8


def test_ssh_banner_then_silence_is_a_handshake_timeout(key_file: Path) -> None:
    """A server that sends its banner and then nothing: the handshake did not finish, in time."""
    with tcp_peer("send", b"SSH-2.0-OpenSSH_9.6\r\n") as peer:
        result, took = ssh_step(peer.port, key_file)
    assert result.retryable
    assert result.error == (
        f"cannot connect to 127.0.0.1 (127.0.0.1:{peer.port}): SSH handshake did not finish within 2s"
    )
    assert took < 8


def test_ssh_port_that_hangs_up_says_so(key_file: Path) -> None:
    """A port that accepts and closes at once: the message says the connection was closed."""
    with tcp_peer("close") as peer:
        result, took = ssh_step(peer.port, key_file)
    assert result.retryable
    assert result.error == (
        f"cannot connect to 127.0.0.1: 127.0.0.1:{peer.port} closed the connection without an SSH banner"
    )
    assert took < 8


def test_ssh_dead_port_is_connection_refused(key_file: Path) -> None:
    """Nobody listening: "Connection refused" with the host and port, retryable, at once."""
    with tcp_peer("silent") as peer:
        port = peer.port
    result, took = ssh_step(port, key_file)
    assert result.retryable
    assert result.error == f"cannot connect to 127.0.0.1 (127.0.0.1:{port}): Connection refused"
    assert took < 5


# --- HTTP: a server that trickles its answer must not hold the worker past the step's budget.


def http_step(url: str, budget: float) -> tuple[ActionResult, float]:
    ctx = ActionContext(
        config=Config(http=HttpConfig(allowed_hosts=["127.0.0.1"])),
        target="web-1",
        timeout_seconds=budget,
        output_limit_bytes=65536,
    )
    started = time.monotonic()
    result = HttpAction().execute(HttpStep(url=url), ctx)
    return result, time.monotonic() - started


def test_http_body_trickle_keeps_the_step_budget() -> None:
    """A body sent one byte every 0.3 s: a 0.5 s step times out near 0.5 s, not when the body ends."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n"
    with trickling_server(head, b"x" * 20, every=0.3) as url:
        result, took = http_step(f"{url}/slow", budget=0.5)
    assert not result.ok
    assert result.timed_out
    assert result.retryable
    assert result.error == f"http GET {url}/slow: timed out after 0.5s"
    assert took < 2.5


def test_http_header_trickle_keeps_the_step_budget() -> None:
    """Headers sent one byte every 0.3 s are bounded by the same budget."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with trickling_server(b"", head, every=0.3) as url:
        result, took = http_step(f"{url}/slow", budget=0.5)
    assert result.timed_out
    assert result.retryable
    assert took < 2.5


# --- allowed_hosts entries that are names, through the real daemon.

HOOK_CODE = """
- code: HOOK-001
  title: Call the hook
  severity: low
  match: {alertname: CallHook}
  playbook: call-hook
  mode: auto
"""
HOOK_PLAYBOOK = """
name: call-hook
version: 1
steps:
  - name: call
    http: {method: POST, url: "{{ annotations.hook }}", json: {n: 1}, expect_status: [200]}
"""


def _hook_run(daemon_factory: Any, tmp_path: Path, allowed: list[str], url: str) -> dict[str, Any]:
    daemon: DaemonProcess = daemon_factory(
        f"sqlite:///{tmp_path / 'hook.db'}",
        files={"codes/zz-hook.yaml": HOOK_CODE, "playbooks/call-hook.yaml": HOOK_PLAYBOOK},
        http={"allowed_hosts": allowed},
    )
    alert = am_alert("CallHook", fingerprint="hook1")
    alert["annotations"]["hook"] = url
    response = daemon.post("alertmanager", am_body(alert))
    assert response.status_code == 202, response.text
    [run_id] = response.json()["runs_queued"]

    def finished() -> dict[str, Any] | None:
        run = daemon.cli("runs", "show", str(run_id))
        return run if run["finished_at"] else None

    return wait_for(finished, timeout=20, interval=0.2)  # type: ignore[no-any-return]


def test_daemon_reaches_localhost_with_the_localhost_entry(
    daemon_factory: Any, tmp_path: Path, hook: TestHttpServer
) -> None:
    """allowed_hosts [localhost]: a step to http://localhost:PORT succeeds; the server sees Host localhost."""
    run = _hook_run(daemon_factory, tmp_path, ["localhost"], f"http://localhost:{hook.port}/hook")
    assert run["status"] == "succeeded", run
    assert [(r.path, r.header("host")) for r in hook.requests] == [("/hook", f"localhost:{hook.port}")]


def test_daemon_refuses_a_name_glob_that_resolves_to_loopback(
    daemon_factory: Any, tmp_path: Path, hook: TestHttpServer
) -> None:
    """allowed_hosts [local*]: localhost matches by name but resolves to loopback no entry allows: refused."""
    run = _hook_run(daemon_factory, tmp_path, ["local*"], f"http://localhost:{hook.port}/hook")
    assert run["status"] == "failed", run
    assert "host 'localhost' resolves to 127.0.0.1: a loopback address" in run["error"]
    assert hook.requests == []
