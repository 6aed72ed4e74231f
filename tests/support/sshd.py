"""A real OpenSSH sshd on 127.0.0.1 for tests: throwaway keys, known_hosts and config in a temp dir.

Tests of the SSH action must talk to a real server: paramiko fakes would hide the
host-key, timeout and buffering behaviour that matters in production.

The server runs as the current user (root on CI). Root's ~/.bashrc runs `pyenv init`
(~85 ms per command), so the authorized_keys entry points HOME at the temp dir
(`environment="HOME=..."`, allowed by `PermitUserEnvironment HOME`): the login shell
then finds no rc file, and /root/.bashrc is left untouched.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
START_TIMEOUT = 10.0


@dataclass
class SshServer:
    """A running throwaway sshd and the files a client needs to reach it."""

    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    tmpdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    log_file: Path = field(repr=False)

    def stop(self) -> None:
        """Stop sshd (and its per-connection children) and delete the temp dir."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log(self) -> str:
        """What sshd wrote to stderr (-e), for assertion messages."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wrong_known_hosts(self) -> Path:
        """A known_hosts file listing a DIFFERENT ed25519 key for this server (changed-key tests)."""
        path = self.tmpdir / "known_hosts.wrong"
        if not path.exists():
            other = _keygen(self.tmpdir / "impostor_host_key")
            path.write_text(f"{_known_hosts_name(self.host, self.port)} {_public_key(other)}\n")
        return path

    def commands(self) -> dict[int, str]:
        """The command line of every process under this sshd (its sessions and what they run), by pid.

        Lets a test wait until a remote command is really running instead of sleeping.
        """
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        found: dict[int, str] = {}
        frontier = [self.process.pid]
        while frontier:
            parent = frontier.pop()
            for child in [pid for pid, ppid in parents.items() if ppid == parent]:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                frontier.append(child)
        return found

    def running(self, text: str, *, besides: Collection[int] = ()) -> bool:
        """Whether a process under this sshd, other than the pids in `besides`, runs `text`."""
        return any(text in line for pid, line in self.commands().items() if pid not in besides)

    def empty_known_hosts(self) -> Path:
        """A known_hosts file that knows no host (unknown-key tests)."""
        path = self.tmpdir / "known_hosts.empty"
        path.touch()
        return path


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _keygen(path: Path) -> Path:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "suture-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _public_key(private: Path) -> str:
    """'ssh-ed25519 AAAA...' without the comment."""
    kind, blob = Path(f"{private}.pub").read_text().split()[:2]
    return f"{kind} {blob}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(server: SshServer, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd exited with status {server.process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection((server.host, server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not accept connections on port {server.port} within {START_TIMEOUT}s")


def start_sshd() -> SshServer:
    """Start sshd on a free loopback port; fails loudly if OpenSSH's server is not installed."""
    if not SSHD.exists():
        raise RuntimeError(
            f"{SSHD} not found: the SSH tests need a real OpenSSH server; "
            "install it with `apt-get install -y openssh-server`"
        )
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege-separation dir
    tmpdir = Path(tempfile.mkdtemp(prefix="suture-sshd-"))
    try:
        home = tmpdir / "home"
        home.mkdir()
        host_key = _keygen(tmpdir / "host_ed25519_key")
        user_key = _keygen(tmpdir / "id_ed25519")
        authorized = tmpdir / "authorized_keys"
        authorized.write_text(f'environment="HOME={home}" {_public_key(user_key)}\n')
        port = _free_port()
        host = "127.0.0.1"
        known_hosts = tmpdir / "known_hosts"
        known_hosts.write_text(f"{_known_hosts_name(host, port)} {_public_key(host_key)}\n")
        config = tmpdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    f"ListenAddress {host}",
                    f"HostKey {host_key}",
                    f"PidFile {tmpdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitUserEnvironment HOME",
                    "MaxStartups 64",
                    "MaxSessions 64",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        log_file = tmpdir / "sshd.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        server = SshServer(
            host=host,
            port=port,
            user=getpass.getuser(),
            key_file=user_key,
            known_hosts=known_hosts,
            tmpdir=tmpdir,
            process=process,
            log_file=log_file,
        )
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    try:
        _wait_listening(server, time.monotonic() + START_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_sshd() -> Iterator[SshServer]:
    """`with running_sshd() as server:` a real sshd for the duration of the block."""
    server = start_sshd()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["SshServer", "running_sshd", "start_sshd"]

if __name__ == "__main__":  # manual check: python -m tests.support.sshd
    with running_sshd() as srv:
        print(srv)
        print(
            os.popen(
                f"ssh -i {srv.key_file} -o UserKnownHostsFile={srv.known_hosts} -p {srv.port} "
                f"{srv.user}@{srv.host} 'echo HOME=$HOME'"
            ).read()
        )
