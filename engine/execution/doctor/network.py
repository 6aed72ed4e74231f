"""Names and peers beyond SSH: `http.allowed_hosts` resolve, notification channels answer.

A channel is only connected to (TCP, or SMTP up to EHLO and NOOP), never sent a message:
`suture notify test NAME` is what sends one.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from engine.config import ChannelConfig, Config
from engine.errors import ConfigError
from engine.execution.doctor.check import Check, ok, problem, skipped
from engine.transport import (
    IP_GLOB,
    IPAddress,
    address_refusal,
    environment_proxy,
    normalise_host,
    tls_context,
)

#: How long a name may take to resolve before doctor calls it a problem.
RESOLVE_TIMEOUT = 3.0
_NOTIFY_TEST = "`suture notify test {name}` sends a real test message"


def check_allowed_hosts(config: Config, timeout: float = RESOLVE_TIMEOUT) -> list[Check]:
    """Each name resolves (all at once, within `timeout`), to addresses HTTP steps may reach."""
    patterns = list(config.http.allowed_hosts)
    names: dict[str, list[Any]] = {}
    checks: dict[str, Check] = {}
    for raw in patterns:
        host = normalise_host(raw)
        if not host or raw in checks or raw in names:
            continue
        if _is_address(host):
            checks[raw] = ok("allowed_host", raw, "an address or network: nothing to resolve")
        elif IP_GLOB.match(host) or set("*?[") & set(host):
            checks[raw] = skipped(
                "allowed_host", raw, "a pattern: each name under it is resolved when a step calls it"
            )
        else:
            names[raw] = _look_up(host)
    deadline = time.monotonic() + timeout
    for raw, answer in names.items():
        answer[1].join(max(deadline - time.monotonic(), 0.0))
        checks[raw] = _judged(raw, answer[0], patterns, timeout)
    return [checks[raw] for raw in dict.fromkeys(patterns) if raw in checks]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        return False
    return True


def _look_up(host: str) -> list[Any]:
    """getaddrinfo in a daemon thread (it has no timeout of its own): [answer list, thread]."""
    answer: list[Any] = []

    def run() -> None:
        try:
            answer.append(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="doctor-resolve")
    thread.start()
    return [answer, thread]


def _judged(raw: str, answer: list[Any], patterns: list[str], timeout: float) -> Check:
    fix = f"correct or remove {raw!r} in http.allowed_hosts, or make it resolve on this machine"
    if not answer:
        return problem("allowed_host", raw, f"did not resolve within {timeout:g}s", fix)
    if isinstance(answer[0], OSError):
        exc = answer[0]
        return problem("allowed_host", raw, f"does not resolve: {exc.strerror or exc}", fix)
    addresses: dict[IPAddress, None] = {}
    for info in answer[0]:
        try:
            addresses[ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])] = None
        except (ValueError, IndexError, TypeError):
            continue
    if not addresses:
        return problem("allowed_host", raw, "resolves to no address", fix)
    for address in addresses:
        reason = address_refusal(address, patterns)
        if reason is not None:
            return problem(
                "allowed_host",
                raw,
                f"resolves to {address}: {reason}; HTTP steps to it are refused",
                f"add {address} (or its network as a CIDR range) to http.allowed_hosts",
            )
    shown = ", ".join(str(a) for a in list(addresses)[:4]) + (" ..." if len(addresses) > 4 else "")
    return ok("allowed_host", raw, f"resolves to {shown}")


def check_channel(config: Config, entry: ChannelConfig) -> Check:
    """Its secrets are set and its endpoint accepts a connection; nothing is sent."""
    for key, name in entry.secret_names():
        try:
            config.channel_secret(entry.name, key, name)
        except ConfigError as exc:
            variable = config.secrets[name].env
            return problem(
                "channel",
                entry.name,
                str(exc),
                f"set {variable} in the daemon's environment (e.g. the systemd unit's EnvironmentFile)",
            )
    if entry.kind == "email":
        return _smtp(entry)
    return _http(config, entry)


def _http(config: Config, entry: ChannelConfig) -> Check:
    if entry.url_secret:
        url = config.channel_secret(entry.name, ("url_secret",), entry.url_secret).get_secret_value().strip()
    else:
        url = entry.endpoint or ""
    proxy = environment_proxy(url)
    try:
        parts = urlsplit(proxy or url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = None
    if proxy:
        what = "the proxy HTTPS_PROXY or HTTP_PROXY names"
    else:
        what = f"the URL in secret {entry.url_secret}" if entry.url_secret else f"url of channel {entry.name}"
    if not host:
        return problem("channel", entry.name, f"{what} is not a valid URL", f"correct {what}")
    where = f"{host}:{port}" + (" (proxy)" if proxy else "")
    try:
        with socket.create_connection((host, port), timeout=entry.timeout.total_seconds()):
            pass
    except TimeoutError:
        reason = f"no answer within {entry.timeout.total_seconds():g}s"
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
    else:
        return ok(
            "channel",
            entry.name,
            f"{entry.kind}: {where} accepts connections; {_NOTIFY_TEST.format(name=entry.name)}",
        )
    return problem(
        "channel",
        entry.name,
        f"{entry.kind}: cannot connect to {where}: {reason}",
        f"check the host and port of {what}, and that this machine may reach it (firewall, proxy)",
    )


def _smtp(entry: ChannelConfig) -> Check:
    smtp = entry.smtp
    if smtp is None:  # the config's own check makes this unreachable
        return problem("channel", entry.name, "an email channel needs smtp", "add smtp: to the channel")
    where = f"{smtp.host}:{smtp.port}"
    timeout = smtp.timeout.total_seconds()
    fix = (
        f"check smtp.host, smtp.port and smtp.tls/starttls of channel {entry.name}, "
        "and that this machine may reach it"
    )
    try:
        session = (
            smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=tls_context(True))
            if smtp.tls
            else smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        )
        with session:
            session.ehlo()
            if smtp.starttls and not smtp.tls:
                session.starttls(context=tls_context(True))
                session.ehlo()
            if smtp.user and not session.has_extn("auth"):
                return problem(
                    "channel", entry.name, f"email: {where} offers no AUTH, but smtp.user is set", fix
                )
            code, reply = session.noop()
    except TimeoutError:
        return problem("channel", entry.name, f"email: {where} did not answer within {timeout:g}s", fix)
    except (smtplib.SMTPException, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return problem("channel", entry.name, f"email: {where}: {reason}", fix)
    if code != 250:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return problem("channel", entry.name, f"email: {where} answered NOOP with {code} {text}", fix)
    return ok(
        "channel", entry.name, f"email: {where} answers EHLO and NOOP; {_NOTIFY_TEST.format(name=entry.name)}"
    )
