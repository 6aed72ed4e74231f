"""Pull connectors: ask a monitoring API which alerts are active now, as `engine.models.Alert`s.

For monitoring that cannot push, and to reconcile what a lost webhook missed. Each
function makes one poll and returns every alert active at that moment, all `firing`;
the caller compares them with the open incidents (an open incident whose fingerprint is
no longer returned has resolved). Like the webhook connectors these know nothing of the
database or of scheduling.

Bounds, for any answer whatsoever: `timeout` seconds to connect and between two reads,
and about the same for the whole body; at most `MAX_RESPONSE_BYTES` of body (after
decompression); at most `MAX_ALERTS` alerts. Redirects are not followed. Every failure
is a `PullError` whose message names the URL (without credentials or query string), the
HTTP status or what was wrong; a token never appears in a message. A poll is all or
nothing: one malformed alert fails the poll, since leaving it out would make the caller
resolve its incident.

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
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import requests.auth
import urllib3
from pydantic import Field, TypeAdapter, ValidationError

from connectors.base import StrMap, Text, Timestamp, VendorModel, describe, dotted, json_type, vendor_alert
from engine.errors import SutureError
from engine.models import Alert, AlertStatus

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

_CHUNK = 64 * 1024
#: How much of an error answer's body goes into the message.
SNIPPET = 200


class PullError(SutureError):
    """A poll failed: unreachable, timed out, non-2xx, not JSON, wrong shape or too big."""


# ------------------------------------------------------------------------ HTTP


def _display_url(url: str) -> str:
    """The URL for messages: scheme, host, port and path; no user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_url(url: str, what: str) -> str:
    """`url` if it is an http(s) URL with a host; PullError otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise PullError(f"{what}: no URL configured")
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise PullError(f"{what}: invalid URL {_display_url(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PullError(f"{what}: URL must start with http:// or https:// and name a host")
    return url.strip()


def check_token(token: str | None, what: str) -> str | None:
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


class _Bearer(requests.auth.AuthBase):
    """`Authorization: Bearer`, as an auth object: a header alone would lose to URL credentials or .netrc."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class _Secrets:
    """Everything that must never reach a message: the token and any password in the URL."""

    def __init__(self, url: str, token: str | None) -> None:
        values = [token] if token else []
        try:
            parts = urlsplit(url)
            values += [parts.password or "", parts.username or "", parts.query]
        except ValueError:
            pass
        self._values = sorted({value for value in values if value and len(value) >= 3}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "***")
        return text


def request_json(
    method: str,
    url: str,
    *,
    what: str,
    token: str | None,
    timeout: float,
    session: requests.Session | None,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """One bounded HTTP exchange; the decoded JSON of a 2xx answer, else PullError."""
    shown = _display_url(url)
    secrets = _Secrets(url, token)
    all_headers = {"Accept": "application/json", **(headers or {})}
    own_session = session is None
    client = requests.Session() if session is None else session
    deadline = time.monotonic() + timeout
    try:
        try:
            response = client.request(
                method,
                url,
                params=params,
                data=body,
                headers=all_headers,
                auth=_Bearer(token) if token else None,
                timeout=(timeout, timeout),
                stream=True,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise PullError(f"{what}: {method} {shown} timed out after {timeout:g}s") from None
        except (requests.RequestException, OSError, ValueError) as exc:
            raise PullError(f"{what}: {method} {shown} failed: {_describe(exc, secrets)}") from None
        try:
            return _read_answer(
                response,
                what=what,
                method=method,
                shown=shown,
                deadline=deadline,
                timeout=timeout,
                secrets=secrets,
            )
        finally:
            response.close()
    finally:
        if own_session:
            client.close()


def _read_answer(
    response: requests.Response,
    *,
    what: str,
    method: str,
    shown: str,
    deadline: float,
    timeout: float,
    secrets: _Secrets,
) -> Any:
    status = response.status_code
    if 300 <= status < 400:
        target = _display_url(response.headers.get("Location", ""))
        raise PullError(
            f"{what}: {method} {shown} answered HTTP {status} redirecting to {target}; "
            "configure the final URL"
        )
    limit = MAX_RESPONSE_BYTES if 200 <= status < 300 else 4 * SNIPPET
    declared = response.headers.get("Content-Length", "")
    if 200 <= status < 300 and declared.strip().isdigit() and int(declared) > limit:
        raise PullError(
            f"{what}: {method} {shown} answered {int(declared)} bytes, "
            f"more than the limit of {MAX_RESPONSE_BYTES}"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in _body_chunks(response):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                if 200 <= status < 300:
                    raise PullError(
                        f"{what}: {method} {shown} answered more than the limit of {MAX_RESPONSE_BYTES} bytes"
                    )
                break
            if time.monotonic() > deadline:
                raise PullError(f"{what}: {method} {shown} timed out after {timeout:g}s reading the answer")
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
        raise PullError(f"{what}: {method} {shown} timed out after {timeout:g}s reading the answer") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        if "timed out" in str(exc).lower():
            raise PullError(
                f"{what}: {method} {shown} timed out after {timeout:g}s reading the answer"
            ) from None
        raise PullError(
            f"{what}: {method} {shown} failed reading the answer: {_describe(exc, secrets)}"
        ) from None
    raw = b"".join(chunks)
    if not 200 <= status < 300:
        snippet = " ".join(raw[:SNIPPET].decode("utf-8", "replace").split())
        detail = f": {secrets.scrub(snippet)}" if snippet else ""
        raise PullError(f"{what}: {method} {shown} answered HTTP {status}{detail}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise PullError(f"{what}: {method} {shown} did not answer valid JSON{where}") from None


def _body_chunks(response: requests.Response) -> Iterator[bytes]:
    """The decoded body, a piece per network read, so that the caller's deadline is checked often.

    `iter_content` fills whole chunks: a server sending a byte every second would keep it
    waiting well past any deadline without tripping the per-read timeout. urllib3 2's
    `read1` returns after one read; with urllib3 1 the per-read timeout is the only bound.
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(_CHUNK)
        return
    while data := read1(_CHUNK, decode_content=True):
        yield data


def _describe(exc: BaseException, secrets: _Secrets) -> str:
    """Why a request failed, in few words: the OS error if there is one, else the exception."""
    text = " ".join(str(exc).split()) or "no detail"
    if isinstance(exc, requests.ConnectionError) and (errno := _ERRNO.search(text)):
        if "resolve" in text.lower():
            return f"cannot resolve the host name ({errno.group(1).strip()})"
        return f"cannot connect ({errno.group(1).strip()})"
    return f"{type(exc).__name__}: {secrets.scrub(text)[:300]}"


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')(]+)")


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
    token: str | None = None,
    timeout: float = 10.0,
    session: requests.Session | None = None,
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
        session=session,
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
    token: str | None = None,
    timeout: float = 10.0,
    session: requests.Session | None = None,
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
        session=session,
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
