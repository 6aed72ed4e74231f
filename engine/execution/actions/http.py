"""The `http` step: one HTTP request to an allowed host, redirects followed by hand.

Safety rules, in the order they apply:

- Only `http` and `https` URLs. The host of the URL *as it will be sent* (after
  httpx has normalised it) must match `http.allowed_hosts` in config.yaml.
  Patterns are case-insensitive fnmatch globs (`*.internal.example`), exact names,
  exact IP addresses (IPv6 with or without brackets) or CIDR networks (`10.0.0.0/8`).
  A glob made only of digits, dots and wildcards (`10.0.*`) only matches IP
  literals, never a DNS name such as `10.0.evil.example`.
- Then the host is resolved once and every address judged (link-local never; loopback and
  private only when an entry names the address, its range, or `localhost`), and the request
  goes to the judged address: see engine/actions/http_transport.py.
- Redirects are never followed by httpx itself. With `follow_redirects: true`
  Suture follows at most 5, checking every `Location` against the allow-list before
  connecting; credentials headers are dropped when a redirect changes origin.
  Without it, a 3xx is simply the final status.
- Request headers never appear in stdout, stderr or the error text; URLs in error
  texts lose their user-info and query string.

The result:

- `ok` is `status in expect_status`.
- `retryable` is true for 5xx, 429, connection errors and timeouts; false for other
  4xx, TLS verification failures, disallowed hosts and malformed steps.
- `timed_out` is true when the request hit its timeout, which is
  `min(step budget, http.timeout)`: one deadline for the whole exchange (DNS, connects,
  TLS, every read and write, redirects and the body), however slowly the server sends.
- `stdout` is the response body, decoded as UTF-8 and capped to the output limit.
- `registered` (what `register:` exposes) holds `status` (int), `body` (the capped
  text), `json` (the parsed body, or None when it is not JSON or was truncated) and,
  for a 429 or 503 answer carrying a valid `Retry-After` header, `retry_after`: the
  seconds the server asked to wait (number, delta-seconds or HTTP-date), bounded by
  `http.max_retry_after`. The runner uses it as the delay before the next attempt.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import socket
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore
import httpx

from engine.config import Config, HttpConfig
from engine.errors import PermanentFailure, StepTimedOut, TemporaryFailure
from engine.execution.actions.base import TRUNCATION_MARKER, ActionContext, Rendering, cap_output, failed
from engine.models import ActionResult, HttpStep
from engine.transport import IP_GLOB, PinnedBackend, PinnedTransport, Refused, Resolver, is_tls_failure
from engine.transport import normalise_host as _normalise_host

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: After the output limit, keep reading (and counting) at most this much more body.
_DRAIN_LIMIT = 16 * 1024 * 1024
_CHUNK = 64 * 1024
#: Headers that must not travel to another origin on a redirect.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Does `host` match one of `patterns` (globs, names, IPs, CIDR networks)?"""
    host = _normalise_host(host)
    if not host:
        return False
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in patterns:
        pattern = _normalise_host(raw)
        if not pattern:
            continue
        if "/" in pattern:
            try:
                network = ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                continue
            if address is not None and address.version == network.version and address in network:
                return True
            continue
        try:
            if address is not None and address == ipaddress.ip_address(pattern):
                return True
        except ValueError:
            pass
        if IP_GLOB.match(pattern) and address is None:
            # `10.0.*` is about addresses; do not let it match `10.0.evil.example`.
            continue
        if fnmatch.fnmatchcase(host, pattern):
            return True
    return False


def _safe_url(url: str) -> str:
    """The URL for messages: no user-info, no query string, no fragment."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = "..." if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<invalid url>"


def _invalid(url: str, exc: BaseException) -> str:
    """Why a URL is invalid, without echoing a query string or user-info it may carry."""
    safe = _safe_url(url)
    if "?" in url or "@" in url:
        return f"http: invalid URL {safe!r}"
    return f"http: invalid URL {safe!r}: {str(exc).replace(url, safe)}"[:400]


def _check_url(url: str, config: HttpConfig) -> None:
    """Refuse anything but http(s) to an allowed host, judged as httpx will send it."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port  # raises ValueError on a bad port
        other = httpx.URL(url).raw_host.decode("ascii")
    except (ValueError, httpx.InvalidURL, UnicodeError) as exc:
        raise Refused(_invalid(url, exc)) from None
    del port
    if scheme not in ("http", "https"):
        raise Refused(f"http: only http and https URLs are allowed, got {scheme or 'no'} scheme")
    if not host:
        raise Refused(f"http: URL {_safe_url(url)!r} has no host")
    authority = url.split("//", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "\\" in authority:
        # Browsers read `a\\@b` as host `a`, RFC 3986 parsers as host `b`: refuse rather than guess.
        seen = authority.split("\\", 1)[0].rsplit("@", 1)[-1]
        raise Refused(f"http: host {seen!r} is ambiguous in URL {_safe_url(url)!r} (a backslash)")
    if _normalise_host(other) != _normalise_host(host):
        # The two URL parsers disagree on where this goes: refuse rather than guess.
        raise Refused(f"http: host {host!r} is ambiguous in URL {_safe_url(url)!r}")
    if not host_allowed(host, config.allowed_hosts):
        raise Refused(f"http: host {host!r} is not in http.allowed_hosts")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


class _Body:
    def __init__(self, kept: bytes, total: int, complete: bool) -> None:
        self.kept = kept
        self.total = total
        self.complete = complete


def _read_body(response: httpx.Response, limit: int, deadline: float) -> _Body:
    """Keep the first `limit` bytes, count the rest (up to a bound), respect the deadline.

    Each read already ends by the deadline (http_transport); the check here also covers
    time spent decompressing.
    """
    kept = bytearray()
    total = 0
    for chunk in response.iter_bytes(chunk_size=_CHUNK):
        total += len(chunk)
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if time.monotonic() > deadline:
            raise TimeoutError("reading the response body took longer than the timeout")
        if total > limit + _DRAIN_LIMIT:
            return _Body(bytes(kept), total, complete=False)
    return _Body(bytes(kept), total, complete=True)


def _body_text(body: _Body, limit: int) -> str:
    if body.complete and body.total <= limit:
        return cap_output(body.kept, limit)
    omitted: int | str = body.total - limit if body.complete else f"over {body.total - limit}"
    return body.kept.decode("utf-8", "ignore") + TRUNCATION_MARKER.format(omitted=omitted)


class HttpAction:
    """Send one HTTP request described by an already rendered `HttpStep`."""

    name: ClassVar[str] = "http"

    def __init__(self, resolver: Resolver = socket.getaddrinfo) -> None:
        #: How names become addresses; tests pass their own (DNS cannot be changed from a test).
        self.resolver = resolver
        #: The addresses the last execute() opened sockets to, in order. For tests and debugging:
        #: the registry's one instance serves every worker, so there it is whichever ran last.
        self.last_connected: list[str] = []

    def render(self, params: HttpStep, rendering: Rendering) -> HttpStep:
        """URL, headers and body rendered; method, expected statuses and TLS settings as written."""
        return params.model_copy(
            update={
                "url": rendering.text(params.url),
                "headers": rendering.value(params.headers),
                "json_body": rendering.value(params.json_body),
                "body": rendering.value(params.body),
            }
        )

    def default_timeout(self, rendered: HttpStep, config: Config) -> float:
        return config.http.timeout.total_seconds()

    def shown(self, rendered: HttpStep) -> dict[str, Any]:
        return {
            "method": rendered.method,
            "url": rendered.url,
            "headers": rendered.headers,
            "json": rendered.json_body,
            "body": rendered.body,
            "expect_status": rendered.expect_status,
        }

    def execute(self, params: HttpStep, ctx: ActionContext) -> ActionResult:
        config = ctx.config.http
        budget = min(float(ctx.timeout_seconds), config.timeout.total_seconds())
        method = params.method
        label = f"http {method} {_safe_url(params.url)}"
        if params.json_body is not None and params.body is not None:
            return _refused("http: give either json or body, not both")
        if budget <= 0:
            return failed(StepTimedOut(f"{label}: no time left for the request"))
        deadline = time.monotonic() + budget
        backend = PinnedBackend(list(config.allowed_hosts), self.resolver, deadline)
        self.last_connected = backend.connected
        client = httpx.Client(
            transport=PinnedTransport(backend, verify=params.verify_tls),
            headers={"User-Agent": "suture"},
            follow_redirects=False,
            trust_env=False,
        )
        try:
            return self._exchange(client, params, ctx, deadline, budget)
        except Refused as refused:
            return failed(refused)
        finally:
            client.close()

    def _exchange(
        self,
        client: httpx.Client,
        params: HttpStep,
        ctx: ActionContext,
        deadline: float,
        budget: float,
    ) -> ActionResult:
        config = ctx.config.http
        method = params.method
        url = params.url
        headers = dict(params.headers)
        data: bytes | None = params.body.encode("utf-8") if params.body is not None else None
        if params.json_body is not None:
            try:
                data = json.dumps(params.json_body, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise Refused(f"http: json cannot be sent: {exc}") from None
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        redirects = 0

        while True:
            _check_url(url, config)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _timed_out(f"http {method} {_safe_url(url)}", budget)
            try:
                request = client.build_request(
                    method, url, headers=headers, content=data, timeout=httpx.Timeout(remaining)
                )
            except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:
                raise Refused(_invalid(url, exc)) from None
            url = str(request.url)
            _check_url(url, config)
            label = f"http {method} {_safe_url(url)}"
            try:
                response = client.send(request, stream=True)
            except (httpx.TimeoutException, httpcore.TimeoutException):
                return _timed_out(label, budget)
            except (httpx.HTTPError, httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
                if is_tls_failure(exc):
                    return failed(PermanentFailure(f"{label}: TLS error: {_reason(exc)}"))
                return failed(TemporaryFailure(f"{label}: {_reason(exc)}"))

            try:
                location = response.headers.get("Location")
                if params.follow_redirects and response.status_code in REDIRECT_STATUSES and location:
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        return _refused(f"{label}: more than {MAX_REDIRECTS} redirects")
                    target = urljoin(url, location.strip())
                    _check_url(target, config)
                    if _origin(target) != _origin(url):
                        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
                    status = response.status_code
                    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                        method = "GET"
                        data = None
                        headers = {
                            k: v
                            for k, v in headers.items()
                            if k.lower() not in ("content-type", "content-length", "transfer-encoding")
                        }
                    url = target
                    continue
                return self._result(response, params, ctx, label, deadline, budget)
            finally:
                response.close()

    def _result(
        self,
        response: httpx.Response,
        params: HttpStep,
        ctx: ActionContext,
        label: str,
        deadline: float,
        budget: float,
    ) -> ActionResult:
        limit = ctx.output_limit_bytes
        status = response.status_code
        try:
            body = _read_body(response, limit, deadline)
        except (httpx.TimeoutException, httpcore.TimeoutException, TimeoutError):
            return _timed_out(label, budget, status)
        except (httpx.HTTPError, httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            reading = TemporaryFailure(f"{label}: reading the response failed: {_reason(exc)}")
            return failed(reading, http_status=status)

        text = _body_text(body, limit)
        parsed: Any = None
        if body.complete and body.total <= limit and body.kept.strip():
            try:
                parsed = json.loads(body.kept.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                parsed = None
        registered: dict[str, Any] = {"status": status, "body": text, "json": parsed}

        if status in (429, 503):
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is not None:
                registered["retry_after"] = min(wait, ctx.config.http.max_retry_after.total_seconds())

        if status in params.expect_status:
            return ActionResult(ok=True, http_status=status, stdout=text, registered=registered)
        expected = ", ".join(str(code) for code in params.expect_status) or "nothing"
        kind = TemporaryFailure if status >= 500 or status == 429 else PermanentFailure
        answer = kind(f"{label} answered {status} (expected {expected})")
        return failed(answer, http_status=status, stdout=text, registered=registered)


def _refused(message: str) -> ActionResult:
    return failed(PermanentFailure(message))


def _timed_out(label: str, budget: float, status: int | None = None) -> ActionResult:
    return failed(StepTimedOut(f"{label}: timed out after {budget:g}s"), http_status=status)


def _reason(exc: BaseException) -> str:
    """A short cause without the request (never headers; URL already in the label)."""
    text = str(exc) or type(exc).__name__
    text = re.sub(r"\?[^\s'\")]+", "?...", text)  # a query string may carry a token
    return text[:300]
