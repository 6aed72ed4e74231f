"""SSH per inventory target, through the SSH action's own connect code: TCP, host key, key, login, sudo.

Never accepts an unknown host key, whatever `ssh.allow_unknown_hosts` says: the fix is a
`ssh-keyscan` line the operator runs (and whose fingerprint they compare) on purpose.
"""

from __future__ import annotations

import fnmatch
import shlex
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import paramiko

from engine.config import Config, InventoryEntry
from engine.errors import StepFailed
from engine.execution.actions.ssh import Destination, connect, load_key, resolve_destination
from engine.execution.doctor.check import Check, ok, problem, skipped

_GLOB = set("*?[")
_PARALLEL = 8


def destinations(config: Config, only: str | None) -> list[Destination | InventoryEntry]:
    """`--target HOST` as the SSH action resolves it, else every inventory entry; an entry whose
    `match` is a pattern without an address names no single host and is returned as it is."""
    if only is not None:
        return [resolve_destination(only, config)]
    found: list[Destination | InventoryEntry] = []
    for entry in config.inventory:
        if not _GLOB & set(entry.match):
            found.append(resolve_destination(entry.match, config))
        elif entry.address:
            ssh = config.ssh
            key = config.resolve(entry.key_file or ssh.key_file)
            found.append(
                Destination(entry.match, entry.address, entry.port or ssh.port, entry.user or ssh.user, key)
            )
        else:
            found.append(entry)
    return found


def check_targets(config: Config, only: str | None, sudo_for: list[str]) -> list[Check]:
    """Every target at once (each within `ssh.connect_timeout`), reported in inventory order."""
    todo = destinations(config, only)
    if not todo:
        return []
    with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(todo)), thread_name_prefix="doctor-ssh") as pool:
        found = pool.map(lambda item: _check_one(item, config, only, sudo_for), todo)
        return [check for checks in found for check in checks]


def _check_one(
    item: Destination | InventoryEntry, config: Config, only: str | None, sudo_for: list[str]
) -> list[Check]:
    if isinstance(item, InventoryEntry):
        return [
            skipped(
                "ssh",
                item.match,
                "a pattern without an address names no single host: not checked; "
                "check one of its hosts with `suture doctor --target HOST`",
            )
        ]
    note = ""
    if only is not None and not any(
        fnmatch.fnmatchcase(only.lower(), e.match.lower()) for e in config.inventory
    ):
        note = " (no inventory entry matches: the ssh defaults apply)"
    return TargetCheck(item, config, note).run(sudo_for)


class TargetCheck:
    """The stages in order; the first that fails ends the target's check."""

    def __init__(self, dest: Destination, config: Config, note: str = "") -> None:
        self.dest = dest
        self.config = config
        self.note = note
        self.timeout = config.ssh.connect_timeout.total_seconds()
        self.known_hosts = config.resolve(config.ssh.known_hosts)
        configured = config.ssh.known_hosts
        self.shown_known_hosts = configured if configured.startswith(("~", "/")) else str(self.known_hosts)

    def run(self, sudo_for: list[str]) -> list[Check]:
        dest = self.dest
        failed = self._tcp() or self._host_key() or self._key()
        if failed is not None:
            return [failed]
        # `allow_unknown_hosts` off: the host key was found above, and doctor never accepts one.
        strict = self.config.model_copy(
            update={"ssh": self.config.ssh.model_copy(update={"allow_unknown_hosts": False})}
        )
        try:
            client = connect(dest, strict, time.monotonic() + self.timeout)
        except StepFailed as exc:
            return [self._login_failed(str(exc))]
        try:
            shown = f"{dest.where} as {dest.user} with {dest.key_file}: host key known, logged in{self.note}"
            checks = [ok("ssh", dest.target, shown)]
            if sudo_for:
                checks.append(self._sudo(client, sudo_for))
            return checks
        finally:
            client.close()

    def _fail(self, detail: str, fix: str) -> Check:
        return problem("ssh", self.dest.target, detail + self.note, fix)

    def _tcp(self) -> Check | None:
        dest = self.dest
        try:
            with socket.create_connection((dest.address, dest.port), timeout=self.timeout):
                return None
        except TimeoutError:
            reason = f"no answer within {self.timeout:g}s"
        except socket.gaierror as exc:
            return self._fail(
                f"cannot resolve {dest.address}: {exc.strerror or exc}",
                "give the target an inventory entry with `address:` (or fix its DNS name)",
            )
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
        return self._fail(
            f"cannot connect to {dest.where}: {reason}",
            f"check that sshd listens on {dest.where} and no firewall blocks this machine "
            "(the inventory entry's address and port, or ssh.port)",
        )

    def _host_key(self) -> Check | None:
        dest = self.dest
        name = dest.address if dest.port == 22 else f"[{dest.address}]:{dest.port}"
        keys = paramiko.HostKeys()
        try:
            if self.known_hosts.is_file():
                keys.load(str(self.known_hosts))
        except (OSError, paramiko.SSHException, ValueError) as exc:
            return self._fail(
                f"cannot read known_hosts {self.known_hosts}: {exc}",
                "make ssh.known_hosts a readable OpenSSH known_hosts file",
            )
        if keys.lookup(name) is not None:
            return None
        missing = "" if self.known_hosts.is_file() else ", which does not exist"
        scan = f"ssh-keyscan -p {dest.port} {shlex.quote(dest.address)} >> {self.shown_known_hosts}"
        return self._fail(
            f"host key for {dest.where} not in {self.shown_known_hosts}{missing}",
            f"run: {scan} (then compare its fingerprint with the host's own, `ssh-keygen -lf` on the host)",
        )

    def _key(self) -> Check | None:
        try:
            load_key(self.dest)
        except StepFailed as exc:
            return self._fail(
                str(exc),
                "set ssh.key_file (or the inventory entry's key_file) to an unencrypted private key "
                "the daemon's user can read",
            )
        return None

    def _login_failed(self, message: str) -> Check:
        dest = self.dest
        if "CHANGED" in message:
            name = dest.address if dest.port == 22 else f"[{dest.address}]:{dest.port}"
            known = self.shown_known_hosts
            fix = (
                f"if {dest.target} was reinstalled: ssh-keygen -R {shlex.quote(name)} -f {known}, "
                f"then ssh-keyscan -p {dest.port} {shlex.quote(dest.address)} >> {self.shown_known_hosts}; "
                "otherwise find out who answers there"
            )
        elif "authentication" in message:
            fix = (
                f"add {dest.key_file}.pub to ~{dest.user}/.ssh/authorized_keys on {dest.target}, e.g. "
                f"ssh-copy-id -i {dest.key_file}.pub -p {dest.port} {dest.user}@{dest.address}"
            )
        else:
            fix = f"check that {dest.where} is an SSH server this machine may reach"
        return self._fail(message, fix)

    def _sudo(self, client: paramiko.SSHClient, sudo_for: list[str]) -> Check:
        """`sudo -n true`, as the SSH action runs `sudo -n -- ...` for a step with `sudo: true`."""
        dest = self.dest
        needed = ", ".join(sudo_for[:3]) + (f" and {len(sudo_for) - 3} more" if len(sudo_for) > 3 else "")
        try:
            status, said = _run(client, "sudo -n true", self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            reason = str(exc) or type(exc).__name__
            return problem(
                "sudo",
                dest.target,
                f"`sudo -n true` could not run: {reason}",
                f"check the SSH connection to {dest.where}",
            )
        if status == 0:
            return ok("sudo", dest.target, f"`sudo -n true` works for {dest.user} (needed by {needed})")
        if status is None:
            detail = f"`sudo -n true` did not finish within {self.timeout:g}s"
        elif status == 127:
            return problem(
                "sudo",
                dest.target,
                f"sudo is not installed (needed by {needed})",
                f"install sudo on {dest.target}",
            )
        else:
            detail = f"`sudo -n true` failed for {dest.user} (exit {status}: {said or 'no message'})"
        return problem(
            "sudo",
            dest.target,
            f"{detail}; needed by {needed}",
            f"allow {dest.user} passwordless sudo on {dest.target}: a line "
            f"`{dest.user} ALL=(root) NOPASSWD: ALL` in /etc/sudoers.d/suture (visudo -f), "
            "narrowed to what the playbooks run",
        )


def _run(client: paramiko.SSHClient, command: str, timeout: float) -> tuple[int | None, str]:
    """Exit status (None if it did not finish in time) and the first line of stderr."""
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("not connected")
    with transport.open_session(timeout=timeout) as channel:
        channel.exec_command(command)
        channel.shutdown_write()
        if not channel.status_event.wait(timeout):
            return None, ""
        status = channel.recv_exit_status()
        deadline = time.monotonic() + 0.5
        err = b""
        while not channel.closed and not channel.eof_received and time.monotonic() < deadline:
            time.sleep(0.01)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(4096)
        text = err.decode("utf-8", "replace").strip()
        return status, text.splitlines()[0] if text else ""
