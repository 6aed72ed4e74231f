"""POST one JSON body through Suture's bounded transport and say what the answer means.

Shared by the slack, webhook and pagerduty kinds. Notification URLs are the operator's own, so
they are not held to `http.allowed_hosts` (a `BoundedBackend`, as pull clients use), but the
whole exchange still ends within the channel's `timeout`, redirects are not followed, and
`HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` are honoured. The outcome:

- 2xx: the answer line `HTTP 202: {"status":"success",...}` (at most 200 characters of body);
- 408, 429, 5xx, refused or reset connections, timeouts: `TemporaryFailure` (the outbox retries);
- any other status (4xx, and 3xx, since a redirect is not followed), a TLS certificate the
  channel will keep showing, a URL that cannot be sent to: `PermanentFailure`.

Messages never carry a secret: the caller passes every secret value (a Slack URL from `secrets:`
is one whole; a routing key; a signing secret) and `shown`, how the URL may appear.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import httpcore
import httpx
from pydantic import SecretStr

from engine.errors import PermanentFailure, TemporaryFailure
from engine.transport import (
    TRANSPORT_ERRORS,
    BoundedBackend,
    Refused,
    Secrets,
    bounded_client,
    display_url,
    environment_proxy,
    is_timeout,
    is_tls_failure,
    read_capped,
)
from engine.transport import describe as describe_failure

#: How much of an answer's body the answer line (or an error) shows.
SNIPPET = 200
#: Statuses that mean "not now" rather than "never".
RETRYABLE = frozenset({408, 425, 429})


def shown_url(url: str, *, secret_name: str | None = None) -> str:
    """How a URL appears in messages; a URL kept in `secrets:` shows only its scheme and host."""
    if secret_name is None:
        return display_url(url)
    try:
        parts = httpx.URL(url)
        return f"{parts.scheme}://{parts.host}/... (secret {secret_name})"
    except (httpx.InvalidURL, ValueError):
        return f"the URL in secret {secret_name}"


def url_secrets(url: str) -> tuple[str, ...]:
    """A secret URL and the parts an error message might repeat without the rest of it."""
    try:
        parts = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return (url,)
    return (url, parts.path, parts.raw_path.decode("ascii", "replace"))


def _snippet(data: bytes, secrets: Secrets) -> str:
    text = " ".join(data.decode("utf-8", "replace").split())
    return secrets.scrub(text)[:SNIPPET]


def post_json(
    url: str,
    body: bytes,
    *,
    what: str,
    shown: str,
    timeout: float,
    secrets: Iterable[str | SecretStr | None] = (),
    headers: Mapping[str, str] | None = None,
) -> str:
    """POST `body` (already serialized JSON) to `url`; the answer line, or a classified failure.

    `what` names the channel in messages (`channel ops-chat`); `secrets` are removed from them.
    """
    proxy = environment_proxy(url)
    where = f"{what}: POST {shown}" + (f" via proxy {display_url(proxy)}" if proxy else "")
    scrubber = Secrets(*secrets, urls=(url, proxy))
    deadline = time.monotonic() + timeout
    try:
        client = bounded_client(BoundedBackend(deadline), proxy=proxy)
    except (Refused, httpx.InvalidURL) as exc:
        raise PermanentFailure(f"{where}: {scrubber.scrub(str(exc))}") from None
    with client:
        try:
            request = client.build_request(
                "POST",
                url,
                content=body,
                headers={"Content-Type": "application/json", "Accept": "application/json", **(headers or {})},
                timeout=httpx.Timeout(timeout),
            )
            response = client.send(request, stream=True)
        except TRANSPORT_ERRORS as exc:
            raise _failure(exc, where, timeout, scrubber) from None
        try:
            return _answer(response, where, deadline, scrubber)
        finally:
            response.close()


def _failure(exc: Exception, where: str, timeout: float, secrets: Secrets) -> Exception:
    if is_timeout(exc):
        return TemporaryFailure(f"{where} timed out after {timeout:g}s")
    detail = describe_failure(exc, secrets)
    if isinstance(
        exc, httpx.InvalidURL | httpx.UnsupportedProtocol | httpcore.UnsupportedProtocol
    ) or is_tls_failure(exc):
        return PermanentFailure(f"{where} failed: {detail}")
    return TemporaryFailure(f"{where} failed: {detail}")


def _answer(response: httpx.Response, where: str, deadline: float, secrets: Secrets) -> str:
    status = response.status_code
    try:
        body = read_capped(response, 4 * SNIPPET, deadline=deadline).kept
    except TRANSPORT_ERRORS:
        body = b""  # the status is the answer; a body cut short does not undo a 2xx
    snippet = _snippet(body, secrets)
    line = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    if 200 <= status < 300:
        return line
    if status in RETRYABLE or status >= 500:
        raise TemporaryFailure(f"{where} answered {line}")
    if 300 <= status < 400:
        target = secrets.scrub(display_url(response.headers.get("Location", "")))
        raise PermanentFailure(
            f"{where} answered HTTP {status} redirecting to {target}; configure the final URL"
        )
    raise PermanentFailure(f"{where} answered {line}")
