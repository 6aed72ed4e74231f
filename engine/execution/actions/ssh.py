"""The `ssh` step: run one already-rendered, already-quoted command on the target host.

Why it is built this way:
- Key authentication and known_hosts only: an unknown host key is refused unless
  `ssh.allow_unknown_hosts`, and a changed one always is (possible man-in-the-middle).
- We open the TCP socket ourselves to set TCP_NODELAY; paramiko does not, and Nagle plus
  delayed ACKs cost ~44 ms per command on a reused connection.
- Connections are reused for the rest of a run through `RunResources` and closed at its end.
- The deadline holds on both ends: the remote command runs under coreutils
  `timeout -k 2 SECS` so it dies on the host too, and we stop reading locally shortly after
  (LOCAL_GRACE) so a host that ignores the wrapper cannot hang a worker.
- stdout and stderr are drained together so a chatty command cannot fill one channel
  window while we wait on the other; bytes beyond the output cap are read and dropped.
"""

from __future__ import annotations

import fnmatch
import math
import select
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import paramiko

from engine.config import Config
from engine.errors import PermanentFailure, StepFailed, StepTimedOut, TemporaryFailure
from engine.execution.actions.base import TRUNCATION_MARKER, ActionContext, Rendering, cap_output, failed
from engine.logging import get_logger
from engine.models import ActionResult, SshStep

log = get_logger("suture.ssh")

#: Exit status of coreutils `timeout` when it had to stop the command.
TIMEOUT_EXIT = 124
#: Seconds we keep waiting locally past the deadline for the remote wrapper's verdict.
LOCAL_GRACE = 1.0
#: After the exit status, how long we wait for the end of output (a daemon it started may hold stdout).
EOF_LINGER = 2.0
_CHUNK = 32768
_POLL = 0.05
_SPURIOUS_BACKOFF = 0.005
_NETWORK_ERRORS = (paramiko.SSHException, OSError, EOFError)


@dataclass(frozen=True)
class Destination:
    """Where and as whom a target name is reached, after inventory overrides."""

    target: str
    address: str
    port: int
    user: str
    key_file: Path

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    def __str__(self) -> str:
        return f"{self.target} ({self.where})"


def resolve_destination(target: str, config: Config) -> Destination:
    """Apply the first inventory entry whose glob matches `target` over the ssh defaults."""
    ssh = config.ssh
    address, port, user, key_file = target, ssh.port, ssh.user, ssh.key_file
    for entry in config.inventory:
        if fnmatch.fnmatchcase(target.lower(), entry.match.lower()):
            address = entry.address or address
            port = entry.port or port
            user = entry.user or user
            key_file = entry.key_file or key_file
            break
    return Destination(target, address, port, user, config.resolve(key_file))


def wrap_command(command: str, *, sudo: bool, seconds: float) -> str:
    """The remote command line; `timeout` runs inside sudo so it can kill a root command."""
    limit = f"{max(math.ceil(seconds * 10) / 10, 0.1):g}"  # never 0: `timeout 0` means no limit
    line = f"timeout -k 2 {limit} sh -c {shlex.quote(command)}"
    return f"sudo -n -- {line}" if sudo else line


class SshAction:
    """Runs `params.command` on `params.target` (or the incident's target) over SSH.

    Retryable: cannot connect, connection lost, and timed out (the remote wrapper killed the
    command, so a retry starts clean; the step's `retries` bounds it). Not retryable: host key
    unknown or changed, authentication or key file problems, nonzero exit status.
    """

    name: ClassVar[str] = "ssh"

    def render(self, params: SshStep, rendering: Rendering) -> SshStep:
        """The command with every value shell-quoted; the target host as plain text."""
        return SshStep(
            command=rendering.text(params.command, shell=True),
            sudo=params.sudo,
            target=rendering.text(params.target) if params.target else None,
        )

    def default_timeout(self, rendered: SshStep, config: Config) -> float:
        return config.ssh.command_timeout.total_seconds()

    def shown(self, rendered: SshStep) -> dict[str, Any]:
        return {"command": rendered.command, "sudo": rendered.sudo, "target": rendered.target}

    def execute(self, params: SshStep, ctx: ActionContext) -> ActionResult:
        deadline = time.monotonic() + ctx.timeout_seconds
        target = (params.target or ctx.target or "").strip()
        if not target:
            return failed(PermanentFailure("no target host: the step sets none and the incident has none"))
        dest = resolve_destination(target, ctx.config)
        try:
            client = self._client(dest, ctx, deadline)
            try:
                channel = _open_session(client, deadline)
            except _NETWORK_ERRORS:
                client = self._client(dest, ctx, deadline, fresh=True)  # cached transport died: once more
                channel = _open_session(client, deadline)
            with channel:
                channel.exec_command(wrap_command(params.command, sudo=params.sudo, seconds=_left(deadline)))
                channel.shutdown_write()  # stdin at EOF: a command reading it must not wait forever
                return _collect(channel, ctx, dest, deadline)
        except StepFailed as failure:
            return failed(failure)
        except _NETWORK_ERRORS as exc:
            reason = str(exc) or type(exc).__name__
            return failed(TemporaryFailure(f"SSH session on {dest} failed: {reason}"))

    def _client(
        self, dest: Destination, ctx: ActionContext, deadline: float, fresh: bool = False
    ) -> paramiko.SSHClient:
        """The run's cached client for this destination, reconnecting if its transport is dead."""
        key = ("ssh", dest.address, dest.port, dest.user, str(dest.key_file))
        cache = ctx.resources.cache
        client: paramiko.SSHClient | None = cache.get(key)
        transport = client.get_transport() if client is not None else None
        if client is not None and (fresh or transport is None or not transport.is_active()):
            client.close()
            client = None
        if client is None:
            client = connect(dest, ctx.config, deadline)
            if key not in cache:
                ctx.resources.on_close(lambda: _close_cached(cache, key))
            cache[key] = client
        return client


class _UnknownHostKey(paramiko.SSHException):
    pass


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname)


class _AcceptUnknown(paramiko.MissingHostKeyPolicy):
    """AutoAddPolicy without the write: AutoAddPolicy saves over the known_hosts file we loaded."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        log.warning(
            "ssh_unknown_host_key_accepted",
            host=hostname,
            key_type=key.get_name(),
            fingerprint=key.fingerprint,
            because="ssh.allow_unknown_hosts is set",
        )


class _Sink:
    """Keeps the first `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.kept) < self.limit:
            self.kept += data[: self.limit - len(self.kept)]

    def text(self) -> str:
        if self.total <= self.limit:
            return cap_output(bytes(self.kept), self.limit)
        omitted = TRUNCATION_MARKER.format(omitted=self.total - self.limit)
        return bytes(self.kept).decode("utf-8", "ignore") + omitted


def _close_cached(cache: dict[Any, Any], key: object) -> None:
    client = cache.pop(key, None)
    if isinstance(client, paramiko.SSHClient):
        client.close()


def connect(dest: Destination, config: Config, deadline: float) -> paramiko.SSHClient:
    """A new authenticated client, or a StepFailed with a message on-call can act on."""
    ssh = config.ssh
    timeout = max(min(ssh.connect_timeout.total_seconds(), _left(deadline)), 0.1)
    until = time.monotonic() + timeout
    known_hosts = config.resolve(ssh.known_hosts)
    pkey = load_key(dest)
    try:
        sock = socket.create_connection((dest.address, dest.port), timeout=timeout)
    except TimeoutError:
        raise TemporaryFailure(f"cannot connect to {dest}: timed out after {timeout:g}s") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise TemporaryFailure(f"cannot connect to {dest}: {reason}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        first = _first_bytes(sock, dest, timeout, until)
    except BaseException:
        sock.close()
        raise
    left = max(until - time.monotonic(), 0.1)
    client = paramiko.SSHClient()
    try:
        if known_hosts.is_file():
            client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(_AcceptUnknown() if ssh.allow_unknown_hosts else _RejectUnknown())
        client.connect(
            hostname=dest.address,
            port=dest.port,
            username=dest.user,
            pkey=pkey,
            look_for_keys=False,
            allow_agent=False,
            sock=sock,
            timeout=left,
            banner_timeout=left,
            auth_timeout=left,
            channel_timeout=left,
        )
    except BaseException as exc:
        transport = client.get_transport()
        banner = bool(getattr(transport, "remote_version", "")) if transport is not None else False
        client.close()
        sock.close()
        if not isinstance(exc, Exception):
            raise
        handshake = _Handshake(timeout=timeout, first=first, banner_seen=banner)
        raise _explain(exc, dest, known_hosts, handshake) from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(int(ssh.keepalive.total_seconds()))
    log.debug("ssh_connected", destination=str(dest), user=dest.user)
    return client


@dataclass(frozen=True)
class _Handshake:
    """What the server had shown of itself when a connect failed, for the message."""

    timeout: float
    #: The first bytes the server sent (peeked, so paramiko still reads them).
    first: bytes
    #: paramiko parsed an `SSH-2.0-...` version line.
    banner_seen: bool


def _first_bytes(sock: socket.socket, dest: Destination, timeout: float, until: float) -> bytes:
    """Wait for the server to speak first, as SSH servers do, so silence gets its own message.

    paramiko reports a silent port as "No existing session" or "Error reading SSH protocol
    banner", depending on which of its timers fires first.
    """
    sock.settimeout(max(until - time.monotonic(), 0.01))
    try:
        data = sock.recv(64, socket.MSG_PEEK)
    except TimeoutError:
        raise TemporaryFailure(
            f"cannot connect to {dest.target}: no SSH banner from {dest.where} within {timeout:g}s"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise TemporaryFailure(f"cannot connect to {dest}: {reason}") from None
    finally:
        sock.settimeout(timeout)
    if not data:
        raise TemporaryFailure(
            f"cannot connect to {dest.target}: {dest.where} closed the connection without an SSH banner"
        )
    return data


def load_key(dest: Destination) -> paramiko.PKey:
    """Load the one key we may use, so a bad key file gets its own message (never its contents)."""
    if not dest.key_file.is_file():
        raise PermanentFailure(f"SSH key file {dest.key_file} does not exist (needed for {dest})")
    try:
        return paramiko.PKey.from_path(dest.key_file)
    except paramiko.PasswordRequiredException:
        reason = "it is encrypted; use a key without a passphrase"
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same thing to on-call
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    raise PermanentFailure(f"cannot use SSH key file {dest.key_file}: {reason}")


def _explain(exc: Exception, dest: Destination, known_hosts: Path, seen: _Handshake) -> StepFailed:
    """Turn a paramiko connect failure into one clear, correctly classified message."""
    who = f"host key for {dest.where}"
    if isinstance(exc, _UnknownHostKey):
        missing = "" if known_hosts.is_file() else ", which does not exist"
        return PermanentFailure(
            f"{who} is not in known_hosts ({known_hosts}{missing}); "
            "add it with ssh-keyscan or set ssh.allow_unknown_hosts"
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        expected, offered = exc.expected_key, exc.key
        return PermanentFailure(
            f"{who} CHANGED: known_hosts ({known_hosts}) has {expected.get_name()} {expected.fingerprint}, "
            f"the server offered {offered.get_name()} {offered.fingerprint}; "
            "possible man-in-the-middle; refusing to connect"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return PermanentFailure(
            f"SSH authentication to {dest} failed for user {dest.user!r} with key {dest.key_file}: {exc}"
        )
    if not seen.banner_seen and not seen.first.startswith(b"SSH-"):
        return TemporaryFailure(
            f"cannot connect to {dest.target}: no SSH banner from {dest.where} within {seen.timeout:g}s "
            f"(it sent {seen.first[:40]!r}: not an SSH server?)"
        )
    if isinstance(exc, TimeoutError) or str(exc) == "No existing session":
        # paramiko's own negotiation timer ran out before key exchange finished.
        return TemporaryFailure(
            f"cannot connect to {dest}: SSH handshake did not finish within {seen.timeout:g}s"
        )
    return TemporaryFailure(f"cannot connect to {dest}: {exc or type(exc).__name__}")


def _open_session(client: paramiko.SSHClient, deadline: float) -> paramiko.Channel:
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("not connected")
    return transport.open_session(timeout=max(_left(deadline), 0.1))


def _collect(
    channel: paramiko.Channel, ctx: ActionContext, dest: Destination, deadline: float
) -> ActionResult:
    """Drain the running command and turn what happened into an ActionResult."""
    out, err = _Sink(ctx.output_limit_bytes), _Sink(ctx.output_limit_bytes)
    finished = _drain(channel, out, err, deadline + LOCAL_GRACE)
    status: int | None = channel.exit_status if finished and channel.exit_status_ready() else None
    if status is not None and status < 0:
        status = None  # the channel closed without an exit-status message
    stdout, stderr = out.text(), err.text()
    registered = {"stdout": stdout, "stderr": stderr, "exit_code": status}
    common: dict[str, Any] = {
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": status,
        "registered": registered,
    }
    if not finished or status == TIMEOUT_EXIT:
        error = f"command timed out after {ctx.timeout_seconds:g}s"
        return failed(StepTimedOut(error), **common)
    if status is None:
        transport = channel.get_transport()
        lost = transport is None or not transport.is_active()
        why = "the connection was lost" if lost else "it was killed by a signal"
        kind = TemporaryFailure if lost else PermanentFailure
        return failed(kind(f"command on {dest} ended without an exit status ({why})"), **common)
    if status != 0:
        # Retryable: a step only retries when its author wrote `retries:`, and for a command
        # that is what they mean (e.g. a package lock held by a concurrent apt run).
        return failed(TemporaryFailure(f"command exited with status {status}"), **common)
    return ActionResult(ok=True, **common)


def _drain(channel: paramiko.Channel, out: _Sink, err: _Sink, deadline: float) -> bool:
    """Read stdout and stderr together until the command is done; False if the deadline came first.

    channel.fileno() ORs the two streams through paramiko's OrPipe, whose set/clear race between
    the transport thread and ours: a wake-up can be lost, or the pipe left readable with nothing
    to read. So each wait is capped at _POLL, and an empty wake-up backs off instead of spinning.
    """
    linger_until: float | None = None
    woke = False
    while True:
        finished = channel.closed or (channel.eof_received and channel.exit_status_ready())
        got = False
        while channel.recv_ready():
            out.feed(channel.recv(_CHUNK))
            got = True
        while channel.recv_stderr_ready():
            err.feed(channel.recv_stderr(_CHUNK))
            got = True
        if finished:
            return True
        now = time.monotonic()
        if channel.exit_status_ready():
            # exited, but something it started still holds stdout open: do not wait for that forever
            linger_until = linger_until or now + EOF_LINGER
            if now >= linger_until:
                return True
        if now >= deadline:
            return False
        wait = min(deadline, linger_until or deadline, now + _POLL) - now
        if channel.eof_received:
            channel.status_event.wait(wait)  # the pipe stays readable after EOF: do not spin on it
            continue
        if woke and not got:
            time.sleep(min(wait, _SPURIOUS_BACKOFF))
        woke = bool(select.select([channel], [], [], wait)[0])


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)
