"""The HTTP step's transport: every connection goes to an address that was checked, within a deadline.

Why it exists: checking only the *name* in a URL against `http.allowed_hosts` lets a name under an
allowed suffix point at 169.254.169.254 (cloud metadata) or an internal address, and a second DNS
look-up at connect time could answer differently from the one that was checked (DNS rebinding).
So the name is resolved once, here, every address is judged, and the socket is opened to the
judged address itself. TLS still uses the URL's name for SNI and certificate verification,
and the Host header is the URL's, because httpcore takes both from the request, not the socket.

Address rules (after the host matched `allowed_hosts` by name or address):

- link-local (169.254.0.0/16, fe80::/10), unspecified, multicast and broadcast: never;
- any other address that is not globally routable (loopback, RFC 1918, CGNAT 100.64.0.0/10,
  ULA fc00::/7, documentation and reserved ranges): only when an `allowed_hosts` entry names it:
  the address itself, a CIDR range or an address glob (`10.0.*`) containing it, or the entry
  `localhost`, which stands for the loopback addresses;
- IPv4 embedded in IPv6 (`::ffff:a.b.c.d`, `64:ff9b::a.b.c.d`, `::a.b.c.d`) is judged as the
  IPv4 address it reaches.

The deadline: every connect, TLS handshake, read and write is bounded by what is left of the
step's budget, so a peer that trickles its headers or body one byte at a time cannot hold a
worker past it. Environment proxies are not used: a proxy would resolve the name itself.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import certifi
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: `socket.getaddrinfo`'s shape; tests pass their own to decide what a name resolves to.
Resolver = Callable[..., list[tuple[Any, ...]]]

#: A glob about IP addresses: digits (or hex and colons for IPv6) and wildcards only.
IP_GLOB = re.compile(r"^(?=.*[0-9])[0-9.*?\[\]!-]+$|^[0-9a-f.*?\[\]!-]*:[0-9a-f:.*?\[\]!-]*$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


class Refused(Exception):
    """A request that must not be sent (or followed); never retryable."""


def normalise_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def reached(address: IPAddress) -> IPAddress:
    """The address a packet really goes to: IPv4 embedded in IPv6 counts as that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64 or (address in _COMPAT and int(address) > 1):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_listed(address: IPAddress, patterns: Iterable[str]) -> bool:
    """Does an `allowed_hosts` entry name this address (itself, CIDR, address glob, `localhost`)?"""
    address = reached(address)
    for raw in patterns:
        pattern = normalise_host(raw)
        if pattern == "localhost":
            if address.is_loopback:
                return True
            continue
        if "/" in pattern:
            try:
                network = ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                continue
            if address.version == network.version and address in network:
                return True
            continue
        try:
            if reached(ipaddress.ip_address(pattern)) == address:
                return True
            continue
        except ValueError:
            pass
        if IP_GLOB.match(pattern) and fnmatch.fnmatchcase(str(address), pattern):
            return True
    return False


def address_refusal(address: IPAddress, patterns: Iterable[str]) -> str | None:
    """Why this address may not be reached, or None when it may."""
    target = reached(address)
    if target.is_link_local:
        return "link-local addresses (cloud metadata) are never reached"
    if target.is_unspecified or target.is_multicast or target == _BROADCAST:
        return "unspecified, multicast and broadcast addresses are never reached"
    if not target.is_global and not address_listed(target, patterns):
        kind = "loopback" if target.is_loopback else "private"
        return (
            f"a {kind} address is reached only when http.allowed_hosts lists it "
            "(the address, a CIDR range, or `localhost` for loopback)"
        )
    return None


def checked_addresses(
    host: str, port: int, patterns: list[str], resolver: Resolver, timeout: float
) -> list[IPAddress]:
    """Resolve `host` once and judge every address; Refused names the first one that fails."""
    name = normalise_host(host)
    try:
        addresses = [ipaddress.ip_address(name)]
        literal = True
    except ValueError:
        literal = False
        addresses = _resolve(name, port, resolver, timeout)
    for address in addresses:
        reason = address_refusal(address, patterns)
        if reason is not None:
            where = f"host {host!r}" if literal else f"host {host!r} resolves to {address}"
            raise Refused(f"http: {where}: {reason}")
    return addresses


def _resolve(name: str, port: int, resolver: Resolver, timeout: float) -> list[IPAddress]:
    """getaddrinfo in a helper thread: it has no timeout of its own and a stuck resolver would hold us."""
    answer: list[Any] = []

    def look_up() -> None:
        try:
            answer.append(resolver(name, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # noqa: BLE001 - handed to the caller below
            answer.append(exc)

    thread = threading.Thread(target=look_up, daemon=True, name="http-resolve")
    thread.start()
    thread.join(max(timeout, 0.0))
    if not answer:
        raise httpcore.ConnectTimeout(f"resolving {name!r} took longer than the time left")
    result = answer[0]
    if isinstance(result, BaseException):
        reason = getattr(result, "strerror", None) or str(result) or type(result).__name__
        raise httpcore.ConnectError(f"cannot resolve {name!r}: {reason}")
    seen: dict[IPAddress, None] = {}
    for info in result:
        try:
            seen[ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])] = None
        except (ValueError, IndexError, TypeError):
            continue
    if not seen:
        raise httpcore.ConnectError(f"cannot resolve {name!r}: no addresses")
    return list(seen)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the deadline, whatever timeout httpcore asks for."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the step's time budget is used up")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self._left(timeout, httpcore.ConnectTimeout)
        tls = self._inner.start_tls(ssl_context, server_hostname, left)
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """connect_tcp resolves, judges and connects to the judged address; nothing resolves twice."""

    def __init__(self, patterns: list[str], resolver: Resolver, deadline: float) -> None:
        self._patterns = patterns
        self._resolver = resolver
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()
        #: Every address a socket was opened to, in order (what the step really reached).
        self.connected: list[str] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        del local_address
        left = self._deadline - time.monotonic()
        addresses = checked_addresses(host, port, self._patterns, self._resolver, left)
        failure: Exception | None = None
        for address in addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                break
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            self.connected.append(str(address))
            return _DeadlineStream(stream, self._deadline)
        if failure is not None:
            raise failure
        raise httpcore.ConnectTimeout("connecting took longer than the time left")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("the http step does not use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def tls_context(verify: bool) -> ssl.SSLContext:
    """Verification against certifi's roots, or a CA bundle named like requests and OpenSSL do."""
    names = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    cafile = next((os.environ[n] for n in names if os.environ.get(n)), certifi.where())
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Body(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from cast(Iterable[bytes], self._response.stream)

    def close(self) -> None:
        self._response.close()


class PinnedTransport(httpx.BaseTransport):
    """An httpx transport over one httpcore pool that uses PinnedBackend; no proxies, no retries."""

    def __init__(self, backend: PinnedBackend, verify: bool) -> None:
        self.backend = backend
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls_context(verify), network_backend=backend, retries=0, max_connections=4
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=cast(Iterable[bytes], request.stream),
            extensions=request.extensions,
        )
        response = self._pool.handle_request(core)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
