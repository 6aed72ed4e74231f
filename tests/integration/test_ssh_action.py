"""The ssh step action against a real OpenSSH server on 127.0.0.1 (see tests/support/sshd.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config, InventoryEntry, SshConfig
from engine.execution.actions.base import ActionContext, RunResources
from engine.execution.actions.ssh import SshAction, resolve_destination, wrap_command
from engine.models import ActionResult, SshStep
from tests.support.sshd import SshServer


def make_config(server: SshServer, inventory: list[InventoryEntry] | None = None, **ssh: Any) -> Config:
    settings: dict[str, Any] = {
        "user": server.user,
        "port": server.port,
        "key_file": str(server.key_file),
        "known_hosts": str(server.known_hosts),
        "connect_timeout": timedelta(seconds=3),
    }
    settings.update(ssh)
    return Config(ssh=SshConfig(**settings), inventory=inventory or [])


def run(
    config: Config,
    command: str,
    *,
    target: str = "127.0.0.1",
    timeout: float = 10.0,
    limit: int = 64 * 1024,
    resources: RunResources | None = None,
    sudo: bool = False,
    step_target: str | None = None,
) -> ActionResult:
    res = resources or RunResources()
    ctx = ActionContext(
        config=config, target=target, timeout_seconds=timeout, output_limit_bytes=limit, resources=res
    )
    try:
        return SshAction().execute(SshStep(command=command, sudo=sudo, target=step_target), ctx)
    finally:
        if resources is None:
            res.close()


def count_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    opened: list[tuple[str, int]] = []
    real: Callable[..., socket.socket] = socket.create_connection

    def counting(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)  # ssh.py looks it up at call time
    return opened


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_command_runs_and_returns_output(sshd: SshServer, tmp_path: Path) -> None:
    """A command runs remotely, its side effect happens, and stdout plus exit code 0 come back."""
    marker = tmp_path / "made-by-ssh"
    result = run(make_config(sshd), f"echo hello > {marker} && cat {marker}")
    assert result.ok, result.error
    assert result.exit_code == 0
    assert result.stdout == "hello\n"
    assert result.error is None
    assert result.registered == {"stdout": "hello\n", "stderr": "", "exit_code": 0}
    assert marker.read_text() == "hello\n"


def test_nonzero_exit_fails_and_may_be_retried(sshd: SshServer) -> None:
    """A nonzero exit gives ok=False, the status and stderr; a step with `retries:` may try again."""
    result = run(make_config(sshd), "echo oops >&2; exit 3")
    assert not result.ok
    assert result.exit_code == 3
    assert result.stderr == "oops\n"
    assert result.error == "command exited with status 3"
    assert result.retryable and not result.timed_out
    assert result.registered["exit_code"] == 3


def test_connection_is_reused_within_a_run(sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two steps of one run share one TCP connection and transport, closed with the run's resources."""
    opened = count_connections(monkeypatch)
    resources = RunResources()
    config = make_config(sshd)
    first = run(config, "echo one", resources=resources)
    transport = next(iter(resources.cache.values())).get_transport()
    second = run(config, "echo two", resources=resources)
    assert (first.stdout, second.stdout) == ("one\n", "two\n")
    assert len(opened) == 1
    assert next(iter(resources.cache.values())).get_transport() is transport
    sock = transport.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    resources.close()
    assert not transport.is_active()
    assert resources.cache == {}


def test_dead_cached_connection_is_replaced(sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the cached transport has died, the next step reconnects once and succeeds."""
    opened = count_connections(monkeypatch)
    resources = RunResources()
    config = make_config(sshd)
    assert run(config, "true", resources=resources).ok
    next(iter(resources.cache.values())).get_transport().close()
    result = run(config, "echo again", resources=resources)
    resources.close()
    assert result.ok, result.error
    assert result.stdout == "again\n"
    assert len(opened) == 2


def test_closed_port_is_a_retryable_error_naming_the_host(sshd: SshServer) -> None:
    """Connection refused is retryable and names the target, address and port."""
    port = free_port()
    config = make_config(sshd, inventory=[InventoryEntry(match="web-*", address="127.0.0.1", port=port)])
    result = run(config, "true", target="web-1")
    assert not result.ok
    assert result.retryable
    assert result.error == f"cannot connect to web-1 (127.0.0.1:{port}): Connection refused"


def test_unknown_host_key_is_refused(sshd: SshServer) -> None:
    """With a known_hosts that lacks the server, the connection is refused with how to fix it."""
    known = sshd.empty_known_hosts()
    result = run(make_config(sshd, known_hosts=str(known)), "true")
    assert not result.ok and not result.retryable
    assert result.error is not None
    assert f"host key for 127.0.0.1:{sshd.port} is not in known_hosts ({known})" in result.error
    assert "ssh-keyscan" in result.error and "allow_unknown_hosts" in result.error


def test_changed_host_key_is_refused(sshd: SshServer) -> None:
    """A known_hosts entry with a different key is refused as a possible man-in-the-middle."""
    result = run(make_config(sshd, known_hosts=str(sshd.wrong_known_hosts())), "true")
    assert not result.ok and not result.retryable
    assert result.error is not None
    assert f"host key for 127.0.0.1:{sshd.port} CHANGED" in result.error
    assert "man-in-the-middle" in result.error and "refusing to connect" in result.error


def test_allow_unknown_hosts_connects_without_writing_known_hosts(sshd: SshServer) -> None:
    """allow_unknown_hosts accepts an unknown key and leaves the known_hosts file untouched."""
    known = sshd.empty_known_hosts()
    result = run(make_config(sshd, known_hosts=str(known), allow_unknown_hosts=True), "echo in")
    assert result.ok, result.error
    assert result.stdout == "in\n"
    assert known.read_text() == ""


def test_allow_unknown_hosts_still_refuses_a_changed_key(sshd: SshServer) -> None:
    """allow_unknown_hosts never accepts a key that contradicts known_hosts."""
    config = make_config(sshd, known_hosts=str(sshd.wrong_known_hosts()), allow_unknown_hosts=True)
    result = run(config, "true")
    assert not result.ok and result.error is not None and "CHANGED" in result.error


def test_authentication_failure_names_user_and_key(sshd: SshServer, tmp_path: Path) -> None:
    """A key the server does not accept is a permanent error naming the user and the key file."""
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    result = run(make_config(sshd, key_file=str(stranger)), "true")
    assert not result.ok and not result.retryable
    assert result.error is not None
    assert f"user '{sshd.user}'" in result.error and str(stranger) in result.error
    assert stranger.read_text().splitlines()[1] not in result.error


def test_missing_key_file_is_a_clear_permanent_error(sshd: SshServer, tmp_path: Path) -> None:
    """A key file that does not exist is reported as such, without trying to connect."""
    result = run(make_config(sshd, key_file=str(tmp_path / "nope")), "true")
    assert not result.ok and not result.retryable
    assert result.error is not None
    assert result.error.startswith(f"SSH key file {tmp_path / 'nope'} does not exist")


def test_hung_command_times_out_and_dies_remotely(sshd: SshServer) -> None:
    """A command past its deadline is stopped on both ends: timed_out, and no remote process is left."""
    marker = f"29.{uuid.uuid4().int % 10**9:09d}"  # a unique `sleep` argument to find the process by
    began = time.monotonic()
    result = run(make_config(sshd), f"sleep {marker}", timeout=1.0)
    elapsed = time.monotonic() - began
    assert result.timed_out and not result.ok
    assert result.error == "command timed out after 1s"
    assert elapsed < 4, elapsed
    for _ in range(30):
        if subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"remote `sleep {marker}` still running after the timeout")


def test_command_ignoring_term_is_stopped_locally_and_killed_remotely(sshd: SshServer) -> None:
    """If the command ignores SIGTERM we still return shortly after the deadline; `timeout -k` kills it."""
    marker = f"28.{uuid.uuid4().int % 10**9:09d}"
    began = time.monotonic()
    result = run(make_config(sshd), f"trap '' TERM; sleep {marker}; echo survived", timeout=1.0)
    elapsed = time.monotonic() - began
    assert result.timed_out and not result.ok and result.exit_code is None
    assert 1.5 < elapsed < 3.5, elapsed
    assert "survived" not in result.stdout
    for _ in range(40):
        if subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"remote `sleep {marker}` survived timeout -k")


def test_connection_sets_tcp_nodelay(sshd: SshServer) -> None:
    """The SSH socket has TCP_NODELAY, avoiding the ~40 ms Nagle/delayed-ACK stall per command."""
    resources = RunResources()
    assert run(make_config(sshd), "true", resources=resources).ok
    [client] = [value for value in resources.cache.values() if hasattr(value, "get_transport")]
    sock = client.get_transport().sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    resources.close()


def test_chatty_command_completes_with_capped_output(sshd: SshServer) -> None:
    """5 MB on stdout and stderr at once cannot deadlock; each stream is capped with the marker."""
    command = "yes | head -c 5000000 >&2 & yes | head -c 5000000; wait"
    began = time.monotonic()
    result = run(make_config(sshd), command, limit=1000, timeout=15)
    assert result.ok, result.error
    assert time.monotonic() - began < 10
    for text in (result.stdout, result.stderr):
        assert text.startswith("y\ny\n")
        assert text.endswith("\n[... output truncated by suture: 4999000 more bytes ...]")
        assert len(text) < 1100


def test_stdin_is_closed(sshd: SshServer) -> None:
    """A command reading stdin gets EOF at once instead of hanging until the deadline."""
    result = run(make_config(sshd), "cat; echo done", timeout=5)
    assert result.ok and result.stdout == "done\n"


@pytest.mark.skipif(
    shutil.which("sudo") is None or os.geteuid() != 0, reason="needs sudo and root to sudo -n"
)
def test_sudo_wraps_the_command(sshd: SshServer) -> None:
    """sudo: true runs the command through sudo -n (SUDO_USER is set) as root."""
    result = run(make_config(sshd), 'echo "$SUDO_USER:$(id -u)"', sudo=True)
    assert result.ok, (result.error, result.stderr)
    assert result.stdout == f"{sshd.user}:0\n"


def test_wrap_command_quotes_and_limits() -> None:
    """The remote line puts `timeout` inside sudo and quotes the command as one argument."""
    assert wrap_command("echo 'a b'; ls", sudo=False, seconds=4.96) == (
        "timeout -k 2 5 sh -c 'echo '\"'\"'a b'\"'\"'; ls'"
    )
    assert wrap_command("id", sudo=True, seconds=0.0) == "sudo -n -- timeout -k 2 0.1 sh -c id"


def test_inventory_overrides_address_port_user_and_key(sshd: SshServer) -> None:
    """The first matching inventory entry supplies address, port, user and key for the step's target."""
    config = Config(
        ssh=SshConfig(
            user="nobody-here", port=22, key_file="/nonexistent", known_hosts=str(sshd.known_hosts)
        ),
        inventory=[
            InventoryEntry(match="db-*", address="10.255.255.1"),
            InventoryEntry(
                match="web-*",
                address="127.0.0.1",
                port=sshd.port,
                user=sshd.user,
                key_file=str(sshd.key_file),
            ),
            InventoryEntry(match="web-1", address="10.255.255.2"),
        ],
    )
    dest = resolve_destination("WEB-1", config)
    assert (dest.address, dest.port, dest.user, dest.key_file) == (
        "127.0.0.1",
        sshd.port,
        sshd.user,
        sshd.key_file,
    )
    result = run(config, "echo via-inventory", target="", step_target="web-1")
    assert result.ok, result.error
    assert result.stdout == "via-inventory\n"


def test_relative_key_path_resolves_against_the_config_dir(sshd: SshServer) -> None:
    """A relative key_file is taken relative to the config file's folder."""
    config = make_config(sshd, key_file=sshd.key_file.name)
    config = config.model_copy(update={"base_dir": sshd.key_file.parent})  # the config is frozen
    assert resolve_destination("x", config).key_file == sshd.key_file


def test_empty_target_is_an_error() -> None:
    """With no step target and no incident target there is nothing to connect to."""
    result = run(Config(), "true", target="  ")
    assert not result.ok
    assert result.error is not None and result.error.startswith("no target host: ")
