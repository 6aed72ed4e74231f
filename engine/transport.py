"""Suture's one HTTP transport: HTTP steps and pull clients connect through it, within a deadline.

The deadline: every connect, TLS handshake, read and write is bounded by what is left of the
exchange's budget (a step's timeout, a poll's `timeout`), so a peer that trickles its headers or
body one byte at a time cannot hold a worker or a poll past it. Names are resolved in a helper
thread under the same deadline. No retries; redirects are never followed here (the HTTP step
follows them by hand, checking each target; pull clients refuse them).

Two backends:

- `BoundedBackend` (pull clients): connects to whatever the operator configured, within the
  deadline. Pull clients honour `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (`environment_proxy`).
- `PinnedBackend` (HTTP steps): also judges every address. Checking only the *name* in a URL
  against `http.allowed_hosts` lets a name under an allowed suffix point at 169.254.169.254
  (cloud metadata) or an internal address, and a second DNS look-up at connect time could answer
  differently from the one that was checked (DNS rebinding). So the name is resolved once, here,
  every address is judged, and the socket is opened to the judged address itself. TLS still uses
  the URL's name for SNI and certificate verification, and the Host header is the URL's, because
  httpcore takes both from the request, not the socket. Environment proxies are not used: a
  proxy would resolve the name itself.

Address rules of `PinnedBackend` (after the host matched `allowed_hosts` by name or address):

- link-local (169.254.0.0/16, fe80::/10), unspecified, multicast and broadcast: never;
- any other address that is not globally routable (loopback, RFC 1918, CGNAT 100.64.0.0/10,
  ULA fc00::/7, documentation and reserved ranges): only when an `allowed_hosts` entry names it:
  the address itself, a CIDR range or an address glob (`10.0.*`) containing it, or the entry
  `localhost`, which stands for the loopback addresses;
- IPv4 embedded in IPv6 (`::ffff:a.b.c.d`, `64:ff9b::a.b.c.d`, `::a.b.c.d`) is judged as the
  IPv4 address it reaches.

Messages: `display_url` is how a URL appears in any error or log (no user-info, no query, no
fragment); `Secrets.scrub` removes tokens, passwords and query strings from any text that goes
into one; `describe` says in few words why an exchange failed.
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
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import certifi
import httpcore
import httpx
from pydantic import SecretStr

from engine.errors import PermanentFailure

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: `socket.getaddrinfo`'s shape; tests pass their own to decide what a name resolves to.
Resolver = Callable[..., list[tuple[Any, ...]]]

#: A glob about IP addresses: digits (or hex and colons for IPv6) and wildcards only.
IP_GLOB = re.compile(r"^(?=.*[0-9])[0-9.*?\[\]!-]+$|^[0-9a-f.*?\[\]!-]*:[0-9a-f:.*?\[\]!-]*$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


#: What a failed exchange can raise, from httpx, httpcore or the socket below them.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    OSError,
)


class Refused(PermanentFailure):
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
            raise error("the time budget is used up")
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


class BoundedBackend(httpcore.NetworkBackend):
    """Resolves within the deadline, tries each address in turn; every stream ends by the deadline."""

    def __init__(self, deadline: float, resolver: Resolver = socket.getaddrinfo) -> None:
        #: `time.monotonic()` by which everything through this backend has ended.
        self.deadline = deadline
        self._resolver = resolver
        self._inner = httpcore.SyncBackend()
        #: Every address a socket was opened to, in order (what the exchange really reached).
        self.connected: list[str] = []

    def addresses(self, host: str, port: int, timeout: float) -> list[IPAddress]:
        """Where `host` may be reached: every address it resolves to."""
        name = normalise_host(host)
        try:
            return [ipaddress.ip_address(name)]
        except ValueError:
            return _resolve(name, port, self._resolver, timeout)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        del local_address
        left = self.deadline - time.monotonic()
        addresses = self.addresses(host, port, left)
        failure: Exception | None = None
        for address in addresses:
            left = self.deadline - time.monotonic()
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
            return _DeadlineStream(stream, self.deadline)
        if failure is not None:
            raise failure
        raise httpcore.ConnectTimeout("connecting took longer than the time left")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("Suture's HTTP transport does not use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class PinnedBackend(BoundedBackend):
    """Also judges every address against `allowed_hosts`; connects to the judged one, resolving once."""

    def __init__(self, patterns: list[str], resolver: Resolver, deadline: float) -> None:
        super().__init__(deadline, resolver)
        self._patterns = patterns

    def addresses(self, host: str, port: int, timeout: float) -> list[IPAddress]:
        return checked_addresses(host, port, self._patterns, self._resolver, timeout)


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


class BoundedTransport(httpx.BaseTransport):
    """An httpx transport over one httpcore pool that uses the given backend; no retries.

    With `proxy` (an `http://` or `https://` URL, user-info for Proxy-Authorization), requests go
    through that proxy: plain HTTP forwarded, HTTPS tunnelled with CONNECT, both over the backend.
    """

    def __init__(self, backend: BoundedBackend, verify: bool = True, proxy: str | None = None) -> None:
        self.backend = backend
        context = tls_context(verify)
        self._pool: httpcore.ConnectionPool
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=context, network_backend=backend, retries=0, max_connections=4
            )
            return
        url = httpx.URL(proxy)
        if url.scheme not in ("http", "https"):
            raise Refused(f"proxy {display_url(proxy)}: only http:// and https:// proxies are supported")
        auth = (url.username, url.password) if url.username else None
        self._pool = httpcore.HTTPProxy(
            proxy_url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=b"/"),
            proxy_auth=auth,
            ssl_context=context,
            network_backend=backend,
            retries=0,
            max_connections=4,
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


#: The HTTP step's name for a BoundedTransport over a PinnedBackend.
PinnedTransport = BoundedTransport


def bounded_client(backend: BoundedBackend, *, verify: bool = True, proxy: str | None = None) -> httpx.Client:
    """An httpx client over `backend`: redirects not followed, nothing taken from the environment."""
    return httpx.Client(
        transport=BoundedTransport(backend, verify, proxy),
        headers={"User-Agent": "suture"},
        follow_redirects=False,
        trust_env=False,
    )


def environment_proxy(url: str) -> str | None:
    """The proxy `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` names for `url`, unless `NO_PROXY` exempts it."""
    proxies = urllib.request.getproxies_environment()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


# --------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Body:
    """The first bytes of a decoded body, how many bytes were read in all, and whether that was all."""

    kept: bytes
    total: int
    complete: bool


def read_capped(response: httpx.Response, keep: int, *, deadline: float, drain: int = 0) -> Body:
    """Keep the first `keep` decoded bytes; read (and count) at most `drain` more; end by the deadline.

    Each network read already ends by the deadline (the backend's streams); the check here also
    bounds time spent decompressing. Past the deadline: TimeoutError.
    """
    kept = bytearray()
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        room = keep - len(kept)
        if room > 0:
            kept += chunk[:room]
        if time.monotonic() > deadline:
            raise TimeoutError("reading the body took longer than the time left")
        if total > keep + drain:
            return Body(bytes(kept), total, complete=False)
    return Body(bytes(kept), total, complete=True)


# -------------------------------------------------------------------- messages


def display_url(url: str) -> str:
    """The URL for messages and logs: no user-info, no fragment; a query string shows as `?...`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = "..." if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<invalid URL>"


#: A query string inside some text (an exception's message may repeat the URL it was about).
_QUERY = re.compile(r"\?[^\s'\")]+")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')(]+)")


class Secrets:
    """Everything that must never reach a message: given values, and a URL's user, password and query."""

    def __init__(self, *values: str | SecretStr | None, urls: Iterable[str | None] = ()) -> None:
        found = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in values]
        for url in urls:
            try:
                parts = urlsplit(url or "")
                found += [parts.password, parts.username, parts.query]
            except ValueError:
                continue
        #: Longest first, so a token containing a shorter secret is removed whole.
        self._values = sorted({v for v in found if v and len(v) >= 3}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "***")
        return text


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from, innermost last (httpx wraps httpcore wraps OSError)."""
    chain: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and item not in chain:
        chain.append(item)
        item = item.__cause__ or item.__context__
    return chain


def is_timeout(exc: BaseException) -> bool:
    """Did the exchange run out of time (a connect, a read, the whole deadline)?"""
    return isinstance(exc, (httpx.TimeoutException, httpcore.TimeoutException, TimeoutError))


def is_tls_failure(exc: BaseException) -> bool:
    """Certificate and handshake failures are permanent: retrying meets the same certificate."""
    return any(isinstance(item, ssl.SSLError) for item in causes(exc))


def describe(exc: BaseException, secrets: Secrets | None = None) -> str:
    """Why an exchange failed, in few words: the OS error if there is one, else the exception."""
    text = _QUERY.sub("?...", (secrets or Secrets()).scrub(" ".join(str(exc).split())))[:300]
    if isinstance(exc, (httpcore.ConnectError, httpx.ConnectError)):
        if text.startswith("cannot resolve"):  # _resolve's own words, naming the host
            return text
        if errno := _ERRNO.search(text):
            return f"cannot connect ({errno.group(1).strip()})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
