"""Pull connectors: ask a monitoring API which alerts are active now, as `engine.models.Alert`s.

For monitoring that cannot push, and to reconcile what a lost webhook missed. Each
function makes one poll and returns every alert active at that moment, all `firing`;
the caller compares them with the open incidents (an open incident whose fingerprint is
no longer returned has resolved). Like the webhook connectors these know nothing of the
database or of scheduling.

Bounds, for any answer whatsoever: `timeout` seconds for the whole exchange (resolving,
connecting, every read, however slowly the server sends), through the transport HTTP steps use
(`engine.transport`); at most `MAX_RESPONSE_BYTES` of body (after decompression); at most
`MAX_ALERTS` alerts. Redirects are not followed. `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` are
honoured. Every failure is a `PullError` whose message names the URL (without credentials or
query string), the HTTP status or what was wrong; a token or password never appears in a
message. A poll is all or nothing: one malformed alert fails the poll, since leaving it out
would make the caller resolve its incident.

- `fetch_alertmanager`: `GET /api/v2/alerts?active=true&silenced=false&inhibited=false`.
  The Alertmanager fingerprint is used verbatim, as the webhook connector does, so the
  poll and the webhook meet on the same incidents.
- `fetch_prometheus`: `GET /api/v1/alerts`; only `firing` alerts (not `pending`); the
  fingerprint is computed from the labels (`connectors.base.label_fingerprint`), and
  `starts_at` is `activeAt`.
- Zabbix's reconcile poll lives in `connectors.zabbix_api` and uses the same transport.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, TypeAdapter, ValidationError

from connectors.base import StrMap, Text, Timestamp, VendorModel, describe, dotted, json_type, vendor_alert
from engine.errors import SutureError
from engine.models import Alert, AlertStatus
from engine.transport import (
    TRANSPORT_ERRORS,
    BoundedBackend,
    Refused,
    Secrets,
    bounded_client,
    display_url,
    environment_proxy,
    is_timeout,
    read_capped,
)
from engine.transport import describe as describe_failure

__all__ = [
    "MAX_ALERTS",
    "MAX_RESPONSE_BYTES",
    "PullError",
    "fetch_alertmanager",
    "fetch_prometheus",
]

#: A larger answer is refused rather than read.
MAX_RESPONSE_BYTES = 20 * 1024 * 1024
#: A poll that returns more alerts than this fails.
MAX_ALERTS = 10_000

#: How much of an error answer's body goes into the message.
SNIPPET = 200

Token = str | SecretStr | None


class PullError(SutureError):
    """A poll failed: unreachable, timed out, non-2xx, not JSON, wrong shape or too big."""


# ------------------------------------------------------------------------ HTTP


def check_url(url: str, what: str) -> str:
    """`url` if it is an http(s) URL with a host; PullError otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise PullError(f"{what}: no URL configured")
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise PullError(f"{what}: invalid URL {display_url(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PullError(f"{what}: URL must start with http:// or https:// and name a host")
    return url.strip()


def check_token(token: Token, what: str) -> str | None:
    """The token's text, if it can travel in a header; PullError otherwise (never showing it)."""
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    if token is None or token == "":
        return None
    if not isinstance(token, str):
        raise PullError(f"{what}: the API token must be text")
    if not token.isprintable() or not token.isascii() or token != token.strip():
        raise PullError(f"{what}: the API token contains characters not allowed in an HTTP header")
    return token


def check_timeout(timeout: float, what: str) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise PullError(f"{what}: timeout must be a positive number of seconds")
    return float(timeout)


class _Bearer(httpx.Auth):
    """`Authorization: Bearer`, as an auth object: a plain header would lose to credentials in the URL."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def request_json(
    method: str,
    url: str,
    *,
    what: str,
    token: str | None,
    timeout: float,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """One bounded HTTP exchange; the decoded JSON of a 2xx answer, else PullError."""
    proxy = environment_proxy(url)
    shown = f"{method} {display_url(url)}" + (f" via proxy {display_url(proxy)}" if proxy else "")
    secrets = Secrets(token, urls=(url, proxy))
    deadline = time.monotonic() + timeout
    try:
        client = bounded_client(BoundedBackend(deadline), proxy=proxy)
    except (Refused, httpx.InvalidURL) as exc:  # the proxy the environment names
        raise PullError(f"{what}: {shown}: {secrets.scrub(str(exc))}") from None
    with client:
        try:
            request = client.build_request(
                method,
                url,
                params=params,
                content=body,
                headers={"Accept": "application/json", **(headers or {})},
                timeout=httpx.Timeout(timeout),
            )
            response = client.send(
                request, auth=_Bearer(token) if token else httpx.USE_CLIENT_DEFAULT, stream=True
            )
        except TRANSPORT_ERRORS as exc:
            if is_timeout(exc):
                raise PullError(f"{what}: {shown} timed out after {timeout:g}s") from None
            raise PullError(f"{what}: {shown} failed: {describe_failure(exc, secrets)}") from None
        try:
            return _read_answer(
                response, what=what, shown=shown, deadline=deadline, timeout=timeout, secrets=secrets
            )
        finally:
            response.close()


def _read_answer(
    response: httpx.Response, *, what: str, shown: str, deadline: float, timeout: float, secrets: Secrets
) -> Any:
    status = response.status_code
    if 300 <= status < 400:
        target = display_url(response.headers.get("Location", ""))
        raise PullError(
            f"{what}: {shown} answered HTTP {status} redirecting to {target}; configure the final URL"
        )
    ok = 200 <= status < 300
    limit = MAX_RESPONSE_BYTES if ok else 4 * SNIPPET
    declared = response.headers.get("Content-Length", "")
    if ok and declared.strip().isdigit() and int(declared) > limit:
        raise PullError(f"{what}: {shown} answered {int(declared)} bytes, more than the limit of {limit}")
    try:
        body = read_capped(response, limit, deadline=deadline)
    except TRANSPORT_ERRORS as exc:
        if is_timeout(exc):
            raise PullError(f"{what}: {shown} timed out after {timeout:g}s reading the answer") from None
        raise PullError(
            f"{what}: {shown} failed reading the answer: {describe_failure(exc, secrets)}"
        ) from None
    if not ok:
        snippet = " ".join(body.kept[:SNIPPET].decode("utf-8", "replace").split())
        detail = f": {secrets.scrub(snippet)}" if snippet else ""
        raise PullError(f"{what}: {shown} answered HTTP {status}{detail}")
    if not body.complete:
        raise PullError(f"{what}: {shown} answered more than the limit of {limit} bytes")
    try:
        return json.loads(body.kept)
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise PullError(f"{what}: {shown} did not answer valid JSON{where}") from None


# ------------------------------------------------------------------ validation

M = TypeVar("M")


def shape(adapter: TypeAdapter[M], payload: Any, what: str, place: str) -> M:
    """Validate with pydantic; the first problem becomes a PullError naming the field."""
    try:
        return adapter.validate_python(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(part for part in (place, dotted(first["loc"])) if part and part != "body")
        raise PullError(f"{what}: unexpected answer: {field or place}: {describe(first)}") from None


def count(items: Any, what: str, place: str) -> list[Any]:
    if not isinstance(items, list):
        raise PullError(f"{what}: unexpected answer: {place} must be a list, got {json_type(items)}")
    if len(items) > MAX_ALERTS:
        raise PullError(f"{what}: {len(items)} alerts, more than the limit of {MAX_ALERTS}")
    return items


# ---------------------------------------------------------------- Alertmanager


class _GettableAlert(VendorModel):
    """One alert of Alertmanager's API v2 `GET /api/v2/alerts` (`gettableAlert`)."""

    labels: StrMap
    annotations: StrMap = Field(default_factory=dict)
    starts_at: Timestamp = Field(default=None, alias="startsAt")
    generator_url: Text | None = Field(default=None, alias="generatorURL")
    fingerprint: Text | None = None


_GETTABLE_ALERTS = TypeAdapter(list[_GettableAlert])


def fetch_alertmanager(
    url: str,
    *,
    source: str,
    token: Token = None,
    timeout: float = 10.0,
    receiver: str | None = None,
    include_suppressed: bool = False,
) -> list[Alert]:
    """The alerts Alertmanager at `url` holds active, neither silenced nor inhibited, all firing.

    With `include_suppressed`, silenced and inhibited alerts come too: a silenced alert is
    still a problem, and must not look resolved to a poll that compares what it sees.

    `source` is the pull source's configured name. `receiver` (a regular expression, as
    Alertmanager takes it) limits the answer to alerts routed to that receiver, so that
    the poll sees what the webhook receiver would have been sent, not every alert.
    `endsAt` of an active alert is only Alertmanager's expiry estimate: ends_at is None.
    """
    what = f"Alertmanager poll {source!r}"
    base = check_url(url, what)
    suppressed = "true" if include_suppressed else "false"
    params = {"active": "true", "silenced": suppressed, "inhibited": suppressed}
    if receiver:
        params["receiver"] = receiver
    payload = request_json(
        "GET",
        base.rstrip("/") + "/api/v2/alerts",
        what=what,
        token=check_token(token, what),
        timeout=check_timeout(timeout, what),
        params=params,
    )
    items = shape(_GETTABLE_ALERTS, count(payload, what, "the alert list"), what, "alerts")
    return [
        vendor_alert(
            source,
            status=AlertStatus.firing,
            labels=item.labels,
            annotations=item.annotations,
            starts_at=item.starts_at,
            ends_at=None,
            generator_url=item.generator_url,
            fingerprint=item.fingerprint,
        )
        for item in items
    ]


# ------------------------------------------------------------------ Prometheus


class _RuleAlert(VendorModel):
    """One alert of Prometheus `GET /api/v1/alerts`."""

    labels: StrMap
    annotations: StrMap = Field(default_factory=dict)
    state: Text
    active_at: Timestamp = Field(default=None, alias="activeAt")


_RULE_ALERTS = TypeAdapter(list[_RuleAlert])


def fetch_prometheus(
    url: str,
    *,
    source: str,
    token: Token = None,
    timeout: float = 10.0,
) -> list[Alert]:
    """The alerts Prometheus at `url` has firing now (pending ones are left out).

    Prometheus gives no fingerprint: it is `label_fingerprint(labels)`, stable across
    polls and restarts. `starts_at` is `activeAt`, when the alert became pending.
    """
    what = f"Prometheus poll {source!r}"
    base = check_url(url, what)
    payload = request_json(
        "GET",
        base.rstrip("/") + "/api/v1/alerts",
        what=what,
        token=check_token(token, what),
        timeout=check_timeout(timeout, what),
    )
    if not isinstance(payload, dict):
        raise PullError(f"{what}: unexpected answer: must be a JSON object, got {json_type(payload)}")
    if payload.get("status") != "success":
        detail = ": ".join(
            str(payload.get(key))[:SNIPPET] for key in ("errorType", "error") if payload.get(key)
        )
        raise PullError(
            f"{what}: Prometheus answered status {str(payload.get('status'))[:40]!r}"
            + (f": {detail}" if detail else "")
        )
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PullError(f"{what}: unexpected answer: data must be an object, got {json_type(data)}")
    items = shape(_RULE_ALERTS, count(data.get("alerts"), what, "data.alerts"), what, "data.alerts")
    return [
        vendor_alert(
            source,
            status=AlertStatus.firing,
            labels=item.labels,
            annotations=item.annotations,
            starts_at=item.active_at,
            ends_at=None,
            generator_url=None,
            fingerprint=None,
        )
        for item in items
        if item.state == "firing"
    ]
